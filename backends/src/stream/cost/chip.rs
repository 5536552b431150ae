//! The chip part of the report (`docs/cost-model.md`, "Area and static power"): the
//! converters at the target's resolutions, the area and static power of every component, and
//! what they make of the stream's totals (TOPS/mm², static energy over the latency).

use super::report::{round, Totals};
use crate::target::Target;
use serde::Serialize;

/// One component of the chip.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ComponentFigures {
    pub name: String,
    /// Units on the chip (`Target::chip_inventory`).
    pub units: f64,
    pub area_mm2: f64,
    /// Static power of all its units (mW).
    pub static_mw: f64,
    /// `static_mw · latency_ns` (pJ): what it leaks during one run of the stream.
    pub static_pj: f64,
}

/// The converters as the target states them and as its resolutions make them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Converters {
    pub adc_bits: u32,
    /// The resolution the target's ADC figures hold at.
    pub adc_ref_bits: u32,
    pub adc_energy_law: String,
    /// Energy of one conversion at `adc_bits` (pJ).
    pub adc_energy_pj: f64,
    /// Conversion rate of one ADC at `adc_bits` (GS/s).
    pub adc_rate_gsps: f64,
    pub dac_bits: u32,
    pub dac_ref_bits: u32,
    /// Energy of one row's DAC per input slice at `dac_bits` (pJ).
    pub dac_energy_pj: f64,
}

/// The chip a stream runs on: its area and static power, and the stream's figures per mm² and
/// with static power.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChipCost {
    /// Arrays of the chip: the target's `array.count`, or the stream's when that is 0.
    pub arrays: u64,
    pub cores: u64,
    pub converters: Converters,
    pub area_mm2: f64,
    pub static_mw: f64,
    /// Static energy over the stream's latency (pJ).
    pub static_pj: f64,
    /// `totals.energy_pj + static_pj`.
    pub energy_with_static_pj: f64,
    /// `ops / energy_with_static_pj`.
    pub tops_per_w_with_static: f64,
    /// `steady_gops / 1000 / area_mm2`: the stream's steady-state throughput per mm².
    pub tops_per_mm2: f64,
    pub components: Vec<ComponentFigures>,
}

/// The chip figures of a stream of `totals` on `t`, whose groups use `stream_arrays` arrays.
pub fn chip_cost(t: &Target, totals: &Totals, stream_arrays: u64) -> ChipCost {
    let inv = t.chip_inventory(stream_arrays);
    let figures = t.chip_figures(stream_arrays);
    let latency = totals.latency_ns;
    let components: Vec<ComponentFigures> = figures
        .components
        .iter()
        .zip(&inv.units)
        .map(|(&(name, mm2, mw), &(_, units))| ComponentFigures {
            name: name.to_string(),
            units,
            area_mm2: round(mm2),
            static_mw: round(mw),
            static_pj: round(mw * latency),
        })
        .collect();
    let static_pj = figures.static_mw * latency;
    let with_static = totals.energy_pj + static_pj;
    let per = |num: f64, den: f64| if den > 0.0 { round(num / den) } else { 0.0 };
    let (c, x) = (&t.cost, &t.chip.crossbar);
    ChipCost {
        arrays: inv.arrays,
        cores: inv.cores,
        converters: Converters {
            adc_bits: x.adc_bits,
            adc_ref_bits: c.adc_ref_bits.unwrap_or(x.adc_bits),
            adc_energy_law: c.adc_energy_law.name().to_string(),
            adc_energy_pj: round(c.adc_energy_at(x.adc_bits)),
            adc_rate_gsps: round(c.adc_rate_at(x.adc_bits)),
            dac_bits: x.dac_bits,
            dac_ref_bits: c.dac_ref_bits.unwrap_or(x.dac_bits),
            dac_energy_pj: round(c.dac_energy_at(x.dac_bits)),
        },
        area_mm2: round(figures.area_mm2),
        static_mw: round(figures.static_mw),
        static_pj: round(static_pj),
        energy_with_static_pj: round(with_static),
        tops_per_w_with_static: per(totals.ops as f64, with_static),
        tops_per_mm2: per(totals.steady_gops / 1000.0, figures.area_mm2),
        components,
    }
}
