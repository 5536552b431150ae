//! The crossbar formulas of the cost model (`docs/cost-model.md`, "The crossbar"): the numerics
//! of a group, the events and cost of one input vector through it, and the peak figures of one
//! fully used array that these formulas imply for a target.

use super::Energy;
use crate::isa::{Instr, WeightEncoding};
use crate::program::Crossbar;
use crate::target::{CostSpec, Target};
use cimc_ir::CrossbarGeometry;
use serde::Serialize;

/// The numerics of a crossbar group, as its `xbar_config` sets them (`docs/hardware-model.md` §1):
/// the arrays and the code widths of a [`Crossbar`] without its ADC steps, which cost nothing
/// (a conversion costs the same whatever its step), so that the numerics are `Copy` and one
/// per group and core is cheap to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numerics {
    /// The arrays: encoding, `R` (rows per row tile), `C` (physical columns of one array),
    /// `b_c`, `b_d`, `b_adc`.
    pub geometry: CrossbarGeometry,
    /// `b_a`.
    pub input_bits: u32,
    /// `b_w`.
    pub weight_bits: u32,
    /// Bits of the stored magnitudes (`b_w − 1` differential, `b_w` offset).
    pub magnitude_bits: u32,
}

impl Numerics {
    /// The numerics of a crossbar.
    pub fn of_crossbar(x: &Crossbar) -> Numerics {
        Numerics {
            geometry: x.geometry,
            input_bits: x.input_bits,
            weight_bits: x.weight_bits,
            magnitude_bits: x.magnitude_bits,
        }
    }

    /// The numerics an `xbar_config` sets (read as the validator and the simulator read it);
    /// `None` for another instruction.
    pub fn of_config(i: &Instr) -> Option<Numerics> {
        crate::stream::xbar_crossbar(i).map(|(x, _)| Numerics::of_crossbar(&x))
    }

    /// The target's array, DAC and cells with these code widths and this encoding.
    pub fn of_target(
        t: &Target,
        input_bits: u32,
        weight_bits: u32,
        encoding: WeightEncoding,
    ) -> Self {
        Numerics {
            geometry: CrossbarGeometry { encoding, ..t.chip.crossbar },
            input_bits,
            weight_bits,
            magnitude_bits: match encoding {
                WeightEncoding::Differential => weight_bits.saturating_sub(1).max(1),
                WeightEncoding::Offset | WeightEncoding::Flipped => weight_bits,
            },
        }
    }

    /// `S_x = ceil(b_a / b_d)`.
    pub fn input_slices(&self) -> u64 {
        (self.input_bits as u64).div_ceil(self.geometry.dac_bits.max(1) as u64)
    }

    /// `S_w = ceil(b / b_c)`, `b` the magnitude bits.
    pub fn weight_slices(&self) -> u64 {
        (self.magnitude_bits as u64).div_ceil(self.geometry.cell_bits.max(1) as u64)
    }

    /// Physical columns per output: `cpo = S_w · (2 differential, 1 offset)`.
    pub fn columns_per_output(&self) -> u64 {
        self.geometry.columns_per_output(self.weight_slices() as u32) as u64
    }

    /// Bytes of one input code in the scratchpad: `ceil(b_a / 8)`.
    pub fn input_bytes(&self) -> u64 {
        (self.input_bits as u64).div_ceil(8).max(1)
    }
}

/// The shape of a group as the cost model sees it: `k` rows per conv group, `n` outputs in all,
/// `conv_groups`, and the number of arrays holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupShape {
    pub k: u64,
    pub n: u64,
    pub conv_groups: u64,
    pub arrays: u64,
}

/// Bytes of one accumulator in the scratchpad (an i32 partial sum).
pub const ACC_BYTES: u64 = 4;

/// The events and cost of one input vector through a group (every conv group of it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VectorCost {
    /// Time of one vector (ns): all arrays of the group work in parallel.
    pub ns: f64,
    /// ADC conversions: `S_x · T · n · cpo`.
    pub conversions: u64,
    /// Multiply-accumulates: `k · n` (each of the `n` outputs has `k` weights).
    pub macs: u64,
    /// Input codes read: `conv_groups · k` of `ceil(b_a/8)` bytes.
    pub read_bytes: u64,
    /// Accumulators written: `n` of 4 bytes.
    pub write_bytes: u64,
    /// Crossbar, DAC, ADC, shift-and-add and buffer energy.
    pub energy: Energy,
}

/// One input vector through a group (`docs/cost-model.md` gives every formula):
///
/// - row tiles `T = ceil(k / R)`; physical columns of one conv group `(n / conv_groups) · cpo`,
///   in `CG = ceil(that / C)` column groups; columns read per input slice over the whole group
///   `cols = T · n · cpo`, spread over its `A` arrays: `ceil(cols / A)` per array;
/// - one input slice takes `max(xbar_read_latency_ns · ceil(cols_per_array / C),
///   cols_per_array / (adcs_per_array · rate(b_adc)))`, a vector `S_x` slices, the ADC's rate
///   and the converters' energies at the group's own resolutions
///   ([`CostSpec::adc_rate_at`], [`CostSpec::adc_energy_at`], [`CostSpec::dac_energy_at`]);
/// - crossbar energy `xbar_read_energy_pj · S_x · k · n · cpo` (every activated row times every
///   column it drives, summed over slices: `Σ_t rows_t = k` per conv group);
/// - DAC energy `dac_energy_pj · S_x · conv_groups · k · CG` (each row driven once per slice in
///   each array of its column groups);
/// - conversions `S_x · cols`, each with `E_adc(b_adc)` and `shift_add_energy_pj`; with the
///   flipped encoding also `S_x · conv_groups · T` shift-and-add events, the digital
///   `Σ_{k in tile} x_i[k]` of every row tile and input slice that its flipped columns need
///   ([`flip_sums`]);
/// - buffer: the inputs read (`conv_groups · k · ceil(b_a/8)` bytes) and the accumulators
///   written (`4 · n` bytes);
/// - array bus: every array's inputs to its input register and its partial sums from its
///   output register, `CG · conv_groups · k · ceil(b_a/8) + T · 4 · n` bytes at
///   `array_bus_pj_per_byte` (the figure is derived at that per-array traffic);
/// - registers: the input register of every row drive (as many as the DAC's) at
///   `input_register_pj`, the output register of every conversion at `output_register_pj`.
pub fn vector_cost(num: &Numerics, g: &GroupShape, c: &CostSpec) -> VectorCost {
    let groups = g.conv_groups.max(1);
    let s_x = num.input_slices();
    let cpo = num.columns_per_output();
    let rows = num.geometry.rows.max(1) as u64;
    let cols_phys = num.geometry.cols.max(1) as u64;
    let tiles = g.k.div_ceil(rows);
    let group_cols = (g.n / groups) * cpo;
    let column_groups = group_cols.div_ceil(cols_phys);
    let cols = tiles * g.n * cpo;
    let per_array = cols.div_ceil(g.arrays.max(1));
    let reads = per_array.div_ceil(cols_phys).max(1);
    let (adc_bits, dac_bits) = (num.geometry.adc_bits, num.geometry.dac_bits);
    let slice_ns = (c.xbar_read_latency_ns * reads as f64)
        .max(per_array as f64 / (c.adcs_per_array * c.adc_rate_at(adc_bits)));
    let conversions = s_x * cols;
    let flip_sums = flip_sums(num, groups * tiles);
    let read_bytes = groups * g.k * num.input_bytes();
    let write_bytes = ACC_BYTES * g.n;
    let row_drives = s_x * groups * g.k * column_groups;
    let bus_bytes = column_groups * read_bytes + tiles * write_bytes;
    let energy = Energy {
        crossbar: c.xbar_read_energy_pj * (s_x * g.k * g.n * cpo) as f64,
        dac: c.dac_energy_at(dac_bits) * row_drives as f64,
        adc: c.adc_energy_at(adc_bits) * conversions as f64,
        shift_add: c.shift_add_energy_pj * (conversions + flip_sums) as f64,
        buffer: c.buffer_read_pj_per_byte * read_bytes as f64
            + c.buffer_write_pj_per_byte * write_bytes as f64,
        registers: c.input_register_pj * row_drives as f64
            + c.output_register_pj * conversions as f64,
        array_bus: c.array_bus_pj_per_byte * bus_bytes as f64,
        ..Energy::default()
    };
    VectorCost {
        ns: s_x as f64 * slice_ns,
        conversions,
        macs: g.k * g.n,
        read_bytes,
        write_bytes,
        energy,
    }
}

/// The flipped encoding's digital input sums per input vector over `row_tiles` row tiles (of
/// every conv group): one per row tile and input slice, `Σ_{k in tile} x_i[k]`, which the
/// shift-and-add scales by `2^b_c − 1` for the columns stored flipped (`docs/hardware-model.md`
/// §1). Priced as one shift-and-add event each (ASSUMED: an adder over the tile's input bits
/// beside the shift-and-add units; ISAAC's patent, US 10,664,271, reads the same sum from an
/// extra crossbar column of all ones through the ADC). 0 for the other encodings.
pub fn flip_sums(num: &Numerics, row_tiles: u64) -> u64 {
    match num.geometry.encoding {
        WeightEncoding::Differential | WeightEncoding::Offset => 0,
        WeightEncoding::Flipped => num.input_slices() * row_tiles,
    }
}

/// One input vector through a crossbar layer of a cascade program run at a lower weight width
/// (`docs/cascade.md`; streams do not switch widths, so this prices what the program does):
/// the crossbar drives only the top slices of the stored weights — `magnitude_bits − shift`
/// bits, i.e. `shift / cell_bits` fewer slices per output — and the residual `R`, with
/// `residual_nonzero` non-zero weights over the layer, is a digital product on the core's
/// matrix unit, one multiply-accumulate per non-zero residual weight per vector at
/// `digital_mac_energy_pj`, taking
/// `residual_nonzero / digital_macs_per_cycle` cycles after the crossbar.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CascadeVectorCost {
    /// The crossbar part: [`vector_cost`] of the top slices.
    pub crossbar: VectorCost,
    /// Digital multiply-accumulates of the residual.
    pub residual_macs: u64,
    /// Their energy (pJ) and time (ns).
    pub residual_pj: f64,
    pub residual_ns: f64,
}

/// [`CascadeVectorCost`] of a group of numerics `num` (the stored width) with its top
/// `magnitude_bits − shift` bits driven and `residual_nonzero` non-zero residual weights.
pub fn cascade_vector_cost(
    num: &Numerics,
    g: &GroupShape,
    shift: u32,
    residual_nonzero: u64,
    c: &CostSpec,
) -> CascadeVectorCost {
    let top = Numerics {
        weight_bits: num.weight_bits.saturating_sub(shift).max(1),
        magnitude_bits: num.magnitude_bits.saturating_sub(shift).max(1),
        ..*num
    };
    let cycle = 1.0 / c.clock_ghz;
    CascadeVectorCost {
        crossbar: vector_cost(&top, g, c),
        residual_macs: residual_nonzero,
        residual_pj: residual_nonzero as f64 * c.digital_mac_energy_pj,
        residual_ns: (residual_nonzero as f64 / c.digital_macs_per_cycle).ceil() * cycle,
    }
}

/// Programming a group (`xbar_load`): `k · n · cpo` cells (every weight slice of every output,
/// zero slices included), rows written one after the other in each array, the arrays in
/// parallel: `min(R, ceil(conv_groups · k · CG / A))` rows per array.
pub fn program_cost(num: &Numerics, g: &GroupShape, c: &CostSpec) -> (u64, f64, f64) {
    let groups = g.conv_groups.max(1);
    let cpo = num.columns_per_output();
    let cells = g.k * g.n * cpo;
    let group_cols = (g.n / groups) * cpo;
    let column_groups = group_cols.div_ceil(num.geometry.cols.max(1) as u64);
    let rows =
        (groups * g.k * column_groups).div_ceil(g.arrays.max(1)).min(num.geometry.rows as u64);
    (cells, cells as f64 * c.xbar_write_energy_pj, rows as f64 * c.xbar_write_latency_ns)
}

/// What the model implies for one array used to the full: `R` rows, `floor(C / cpo)` outputs,
/// one input vector after the other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Peak {
    pub target: String,
    pub input_bits: u32,
    pub weight_bits: u32,
    pub encoding: String,
    pub rows: u64,
    pub outputs: u64,
    pub macs_per_vector: u64,
    pub ns_per_vector: f64,
    /// Crossbar, DAC and ADC energy of one vector (pJ): what a macro paper's TOPS/W counts.
    pub analog_pj: f64,
    /// With the shift-and-add of the ADC outputs and the array's input and output registers.
    pub array_pj: f64,
    /// With the buffer and array-bus traffic of the `mvm` (inputs read, accumulators written).
    pub mvm_pj: f64,
    /// `2 · MACs / analog_pj` (TOPS/W = operations per pJ).
    pub analog_tops_per_w: f64,
    /// `2 · MACs / array_pj`.
    pub array_tops_per_w: f64,
    /// `2 · MACs / mvm_pj`.
    pub mvm_tops_per_w: f64,
    /// `2 · MACs / ns_per_vector` for one array (GOPS).
    pub gops_per_array: f64,
    /// `gops_per_array` times the target's `array.count` (TOPS; 0 when the count is 0).
    pub chip_tops: f64,
}

/// The peak figures of one fully used array of `target` with these code widths.
pub fn array_peak(target: &Target, input_bits: u32, weight_bits: u32, enc: WeightEncoding) -> Peak {
    let num = Numerics::of_target(target, input_bits, weight_bits, enc);
    let outputs = (num.geometry.cols as u64 / num.columns_per_output()).max(1);
    let shape = GroupShape { k: num.geometry.rows as u64, n: outputs, conv_groups: 1, arrays: 1 };
    let v = vector_cost(&num, &shape, &target.cost);
    let e = &v.energy;
    let analog_pj = e.crossbar + e.dac + e.adc;
    let array_pj = analog_pj + e.shift_add + e.registers;
    let mvm_pj = array_pj + e.buffer + e.array_bus;
    let ops = 2.0 * v.macs as f64;
    let per = |pj: f64| if pj > 0.0 { ops / pj } else { 0.0 };
    let gops = ops / v.ns;
    Peak {
        target: target.name.clone(),
        input_bits,
        weight_bits,
        encoding: enc.name().into(),
        rows: shape.k,
        outputs,
        macs_per_vector: v.macs,
        ns_per_vector: v.ns,
        analog_pj,
        array_pj,
        mvm_pj,
        analog_tops_per_w: per(analog_pj),
        array_tops_per_w: per(array_pj),
        mvm_tops_per_w: per(mvm_pj),
        gops_per_array: gops,
        chip_tops: gops * target.chip.arrays as f64 / 1000.0,
    }
}
