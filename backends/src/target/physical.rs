//! The figures of a target that move with the design (`docs/cost-model.md`, "Converters that
//! scale" and "Area and static power"): how the ADC's energy, rate and area and the DAC's energy
//! and area follow their resolution from the figure a source gives at one resolution, and the
//! area and static power of every component of the chip.
//!
//! A target states its converter figures at one resolution (`cost.adc_ref_bits`,
//! `cost.dac_ref_bits`, by default the file's own `[adc] bits` and `[dac] bits`); a group whose
//! `xbar_config` sets another resolution costs what the cited law gives. The area and static
//! power are per unit (`[area]`, `[leakage]`); [`Target::chip_inventory`] counts the units.

use super::{CostSpec, Target};
use serde::{Deserialize, Serialize};

/// How the energy of one ADC conversion follows the resolution `b` (`cost.adc_energy_law`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdcEnergyLaw {
    /// B. Murmann's ADC performance survey (1997–2024): the best converters' energy per
    /// conversion doubles per bit where the comparator and logic set it (a constant Walden
    /// figure of merit) and quadruples per bit above `adc_thermal_bits`, where the sampling
    /// capacitor is sized by kT/C noise (a constant Schreier figure of merit):
    /// `s(b) = 2^b` for `b ≤ b_t`, `2^b_t · 4^(b − b_t)` above.
    #[default]
    Murmann,
    /// R. H. Walden, "Analog-to-digital converter survey and analysis", IEEE JSAC 17(4), 1999:
    /// `E = FoM · 2^ENOB` at every resolution, `s(b) = 2^b`.
    Walden,
    /// The figure holds at every resolution (no scaling).
    Fixed,
}

/// How the conversion rate of one ADC follows its resolution (`cost.adc_rate_law`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdcRateLaw {
    /// A successive-approximation converter decides one bit per comparator cycle: the rate
    /// is inversely proportional to the bits, `rate(b) = rate_ref · b_ref / b`.
    #[default]
    Sar,
    /// The rate holds at every resolution (a flash converter decides all bits at once).
    Fixed,
}

/// How the energy and area of one DAC follow its resolution (`cost.dac_energy_law`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DacEnergyLaw {
    /// A binary-weighted DAC of `2^b` unit elements: energy and area `∝ 2^b` (the switching
    /// energy of a binary-weighted capacitor DAC is `∝ 2^N · C_u · V²`: A. Saberi et al.,
    /// "Analysis of power consumption and linearity in capacitive digital-to-analog converters
    /// used in successive approximation ADCs", IEEE TCAS-I 58(8), 2011).
    #[default]
    Binary,
    /// The figure holds at every resolution.
    Fixed,
}

impl AdcEnergyLaw {
    /// The law's relative energy `s(b)` at `bits` (`thermal_bits` = `b_t`).
    pub fn shape(self, bits: f64, thermal_bits: f64) -> f64 {
        match self {
            AdcEnergyLaw::Murmann if bits > thermal_bits => {
                2f64.powf(thermal_bits) * 4f64.powf(bits - thermal_bits)
            }
            AdcEnergyLaw::Murmann | AdcEnergyLaw::Walden => 2f64.powf(bits),
            AdcEnergyLaw::Fixed => 1.0,
        }
    }

    /// The law's name in a target file.
    pub fn name(self) -> &'static str {
        match self {
            AdcEnergyLaw::Murmann => "murmann",
            AdcEnergyLaw::Walden => "walden",
            AdcEnergyLaw::Fixed => "fixed",
        }
    }

    pub(super) fn is_default(&self) -> bool {
        *self == AdcEnergyLaw::default()
    }
}

impl AdcRateLaw {
    pub(super) fn is_default(&self) -> bool {
        *self == AdcRateLaw::default()
    }
}

impl DacEnergyLaw {
    pub(super) fn is_default(&self) -> bool {
        *self == DacEnergyLaw::default()
    }
}

/// The default knee of the Murmann law (bits): ~10 bits (SNDR ≈ 62 dB), where the survey's
/// energy envelope turns from the Walden slope to the thermal (Schreier) slope.
pub const ADC_THERMAL_BITS: f64 = 10.0;

pub(super) fn default_thermal_bits() -> f64 {
    ADC_THERMAL_BITS
}

pub(super) fn is_default_thermal_bits(b: &f64) -> bool {
    *b == ADC_THERMAL_BITS
}

impl CostSpec {
    /// The ADC's energy, area and static power at `bits` relative to its figures at
    /// `adc_ref_bits` (1 when no reference is set, or at the reference).
    pub fn adc_scale(&self, bits: u32) -> f64 {
        match self.adc_ref_bits {
            Some(r) if r != bits => {
                let law = self.adc_energy_law;
                law.shape(bits as f64, self.adc_thermal_bits)
                    / law.shape(r as f64, self.adc_thermal_bits)
            }
            _ => 1.0,
        }
    }

    /// Energy of one conversion at `bits` (pJ).
    pub fn adc_energy_at(&self, bits: u32) -> f64 {
        self.adc_energy_pj * self.adc_scale(bits)
    }

    /// Conversions per ns of one ADC at `bits` (GS/s).
    pub fn adc_rate_at(&self, bits: u32) -> f64 {
        match (self.adc_rate_law, self.adc_ref_bits) {
            (AdcRateLaw::Sar, Some(r)) if r != bits => {
                self.adc_rate_gsps * r as f64 / bits.max(1) as f64
            }
            _ => self.adc_rate_gsps,
        }
    }

    /// The DAC's energy, area and static power at `bits` relative to `dac_ref_bits`.
    pub fn dac_scale(&self, bits: u32) -> f64 {
        match (self.dac_energy_law, self.dac_ref_bits) {
            (DacEnergyLaw::Binary, Some(r)) if r != bits => 2f64.powi(bits as i32 - r as i32),
            _ => 1.0,
        }
    }

    /// Energy of one row's DAC per input slice at `bits` (pJ).
    pub fn dac_energy_at(&self, bits: u32) -> f64 {
        self.dac_energy_pj * self.dac_scale(bits)
    }
}

/// Declares a table of per-component figures (`[area]` in mm², `[leakage]` in mW) with the
/// components in one order, the file keys being `<component>_<unit>`.
macro_rules! component_table {
    ($(#[$doc:meta])* $name:ident, { $($field:ident = $isaac:expr, $what:literal;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(#[doc = $what] pub $field: f64,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $isaac,)* }
            }
        }

        impl $name {
            /// Every figure with its key, in file order.
            pub fn fields(&self) -> Vec<(&'static str, f64)> {
                vec![$((stringify!($field), self.$field),)*]
            }

            pub(super) fn is_default(&self) -> bool {
                *self == Self::default()
            }
        }
    };
}

component_table!(
    /// The `[area]` table: the silicon area of one unit of every component (mm²). The defaults
    /// are ISAAC's Table I (`targets/isaac.toml` gives each derivation).
    AreaSpec, {
    xbar_mm2 = 0.000025, "One crossbar array.";
    adc_mm2 = 0.0012, "One ADC at `cost.adc_ref_bits` (scales with the ADC energy law).";
    dac_mm2 = 1.66015625e-7, "One row's DAC at `cost.dac_ref_bits` (scales with the DAC law).";
    sample_hold_mm2 = 3.90625e-8, "One column's sample-and-hold.";
    shift_add_mm2 = 0.00003, "The shift-and-add of one array.";
    array_buffer_mm2 = 0.00035875, "The input and output registers of one array.";
    core_buffer_mm2 = 0.0862, "A core's scratchpad (eDRAM or SRAM) with its output buffer.";
    bus_mm2 = 0.09, "A core's bus between the scratchpad and the arrays.";
    digital_mm2 = 0.0009, "A core's digital units (vector unit, pooling, shift-and-add).";
    router_mm2 = 0.03775, "A core's share of the on-chip network's routers.";
    link_mm2 = 22.88, "The chip's off-chip links (one per chip).";
});

component_table!(
    /// The `[leakage]` table: the static power of one unit of every component (mW), drawn for
    /// the whole latency of a stream. ISAAC's Table I gives total power only, so the defaults
    /// are 0 (`targets/puma.toml` states the PUMA simulator's leakage).
    LeakageSpec, {
    xbar_mw = 0.0, "One crossbar array.";
    adc_mw = 0.0, "One ADC at `cost.adc_ref_bits` (scales with the ADC energy law).";
    dac_mw = 0.0, "One row's DAC at `cost.dac_ref_bits`.";
    sample_hold_mw = 0.0, "One column's sample-and-hold.";
    shift_add_mw = 0.0, "The shift-and-add of one array.";
    array_buffer_mw = 0.0, "The input and output registers of one array.";
    core_buffer_mw = 0.0, "A core's scratchpad with its output buffer.";
    bus_mw = 0.0, "A core's bus between the scratchpad and the arrays.";
    digital_mw = 0.0, "A core's digital units.";
    router_mw = 0.0, "A core's share of the routers.";
    link_mw = 0.0, "The chip's off-chip links.";
});

/// How many units of each component a chip has, in the order of [`AreaSpec::fields`], with
/// the factor of the converters' scaling folded into the ADC and DAC counts' weights.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inventory {
    /// Arrays on the chip.
    pub arrays: u64,
    /// `ceil(arrays / core.arrays)`.
    pub cores: u64,
    /// Per component: its name (the key without the unit) and its unit count.
    pub units: Vec<(&'static str, f64)>,
}

/// Area and static power of a chip by component.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChipFigures {
    /// Per component: name, area (mm²), static power (mW).
    pub components: Vec<(&'static str, f64, f64)>,
    pub area_mm2: f64,
    pub static_mw: f64,
}

impl Target {
    /// The units of a chip of `arrays` arrays (`array.count` when it is not 0): per array one
    /// crossbar, `cost.adcs_per_array` ADCs, a DAC per row, a sample-and-hold per column, one
    /// shift-and-add and one set of array registers; per core a scratchpad, a bus, the digital
    /// units and a share of the routers; one set of off-chip links.
    pub fn chip_inventory(&self, arrays: u64) -> Inventory {
        let arrays = if self.chip.arrays > 0 { self.chip.arrays as u64 } else { arrays };
        let cores = arrays.div_ceil(self.core.arrays.max(1) as u64);
        let x = &self.chip.crossbar;
        let (a, c) = (arrays as f64, cores as f64);
        let units = vec![
            ("xbar", a),
            ("adc", a * self.cost.adcs_per_array),
            ("dac", a * x.rows as f64),
            ("sample_hold", a * x.cols as f64),
            ("shift_add", a),
            ("array_buffer", a),
            ("core_buffer", c),
            ("bus", c),
            ("digital", c),
            ("router", c),
            ("link", if arrays > 0 { 1.0 } else { 0.0 }),
        ];
        Inventory { arrays, cores, units }
    }

    /// Area and static power by component of a chip of `arrays` arrays (see
    /// [`Target::chip_inventory`]), the ADCs and DACs at the target's resolutions.
    pub fn chip_figures(&self, arrays: u64) -> ChipFigures {
        let inv = self.chip_inventory(arrays);
        let x = &self.chip.crossbar;
        let (adc, dac) = (self.cost.adc_scale(x.adc_bits), self.cost.dac_scale(x.dac_bits));
        let area = self.area.fields();
        let leak = self.leakage.fields();
        let mut out = ChipFigures::default();
        for (i, (name, n)) in inv.units.iter().enumerate() {
            let scale = match *name {
                "adc" => adc,
                "dac" => dac,
                _ => 1.0,
            };
            let (mm2, mw) = (n * area[i].1 * scale, n * leak[i].1 * scale);
            out.components.push((name, mm2, mw));
            out.area_mm2 += mm2;
            out.static_mw += mw;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isaac() -> Target {
        Target::preset("isaac").expect("invariant: the preset exists")
    }

    #[test]
    fn murmann_doubles_then_quadruples() {
        let law = AdcEnergyLaw::Murmann;
        assert_eq!(law.shape(9.0, 10.0) / law.shape(8.0, 10.0), 2.0);
        assert_eq!(law.shape(10.0, 10.0) / law.shape(9.0, 10.0), 2.0);
        assert_eq!(law.shape(11.0, 10.0) / law.shape(10.0, 10.0), 4.0);
        assert_eq!(law.shape(12.0, 10.0) / law.shape(11.0, 10.0), 4.0);
        assert_eq!(
            AdcEnergyLaw::Walden.shape(12.0, 10.0) / AdcEnergyLaw::Walden.shape(11.0, 10.0),
            2.0
        );
        assert_eq!(AdcEnergyLaw::Fixed.shape(12.0, 10.0), 1.0);
    }

    #[test]
    fn isaac_keeps_its_anchor_and_scales_by_the_law() {
        let c = isaac().cost;
        assert_eq!(c.adc_ref_bits, Some(8));
        // Table I's 2 mW at 1.28 GS/s at the published 8 bits.
        assert_eq!(c.adc_energy_at(8), 1.5625);
        // By hand: 4 bits = 1.5625 / 2^4; 10 bits = 1.5625 * 2^2; 12 bits = 1.5625 * 4 * 16.
        assert_eq!(c.adc_energy_at(4), 1.5625 / 16.0);
        assert_eq!(c.adc_energy_at(10), 6.25);
        assert_eq!(c.adc_energy_at(12), 1.5625 * 4.0 * 16.0);
        assert_eq!(c.adc_energy_at(10) / c.adc_energy_at(4), 64.0);
        // SAR: one bit per cycle.
        assert_eq!(c.adc_rate_at(8), 1.28);
        assert_eq!(c.adc_rate_at(4), 2.56);
        assert_eq!(c.adc_rate_at(10), 1.28 * 0.8);
        // DAC: 1-bit anchor, 2 bits double.
        assert_eq!(c.dac_energy_at(1), 0.390625);
        assert_eq!(c.dac_energy_at(2), 0.78125);
    }

    #[test]
    fn no_reference_means_no_scaling() {
        let c = CostSpec::default();
        assert_eq!(c.adc_ref_bits, None);
        assert_eq!(c.adc_energy_at(4), c.adc_energy_pj);
        assert_eq!(c.adc_rate_at(12), c.adc_rate_gsps);
        assert_eq!(c.dac_energy_at(4), c.dac_energy_pj);
    }

    #[test]
    fn isaac_area_is_table_one() {
        // Table I: IMA 0.157 mm² for 12, tile 0.372 mm², chip 85.4 mm² (168 tiles + 22.88 links).
        let t = isaac();
        let f = t.chip_figures(0);
        let ima = t.chip_figures(0);
        let per_ima: f64 = ima.components[..6].iter().map(|c| c.1).sum::<f64>() / (168.0 * 12.0);
        assert!((per_ima * 12.0 - 0.157).abs() < 0.001, "{per_ima}");
        assert!((f.area_mm2 - 85.4).abs() < 0.1, "{}", f.area_mm2);
        assert_eq!(f.static_mw, 0.0);
    }
}
