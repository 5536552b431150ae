//! The cost report of an instruction stream (`cimc_backends::stream::cost`) for people: a
//! table per layer with the totals, and an SVG of the arrays' utilization over time, the energy
//! by component and the energy per layer (`docs/cost-model.md`). The JSON form is the report
//! itself (`serde_json::to_string_pretty(&report)`).

use crate::svg;
use cimc_backends::stream::cost::{CostReport, LayerCost};
use std::fmt::Write;

/// A time with a readable unit: `850 ns`, `12.3 µs`, `4.56 ms`, `1.2 s`.
pub fn time(ns: f64) -> String {
    scaled(ns, &[(1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns")])
}

/// An energy with a readable unit: `850 pJ`, `12.3 nJ`, `4.56 µJ`, `1.2 mJ`.
pub fn energy(pj: f64) -> String {
    scaled(pj, &[(1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ")])
}

fn scaled(v: f64, units: &[(f64, &str)]) -> String {
    for &(f, u) in units {
        if v.abs() >= f {
            let x = v / f;
            return if x >= 100.0 { format!("{x:.0} {u}") } else { format!("{x:.3} {u}") };
        }
    }
    format!("{v:.3} {}", units[units.len() - 1].1)
}

/// The top of a percentage axis for values up to `peak`: 100 when they come near it, else the
/// first of 0.1, 0.2, 0.5, 1, 2, 5... above the peak (so that a low utilization stays visible).
fn y_top(peak: f64) -> f64 {
    if peak >= 50.0 {
        return peak.max(100.0);
    }
    let mut top = 0.1;
    for m in [2.0, 2.5, 2.0].iter().cycle() {
        if top >= peak {
            break;
        }
        top *= m;
    }
    top
}

/// The unit for plotting energies up to `max_pj`, and the factor from pJ to it.
fn energy_unit(max_pj: f64) -> (&'static str, f64) {
    match max_pj {
        m if m >= 1e7 => ("µJ", 1e-6),
        m if m >= 1e4 => ("nJ", 1e-3),
        _ => ("pJ", 1.0),
    }
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// The per-layer table with the totals, as printed on the terminal.
pub fn table(r: &CostReport) -> String {
    let mut s = String::new();
    let t = &r.totals;
    let _ = writeln!(
        s,
        "stream {} on {} (hash {}), {}, {} cores",
        r.stream,
        r.target,
        r.target_hash,
        r.schedule,
        r.cores.len()
    );
    let rows: Vec<&LayerCost> = r.layers.iter().chain(r.unattributed.as_ref()).collect();
    let safe = |n: &str| crate::report::terminal_safe(n);
    let w = rows.iter().map(|l| safe(&l.name).chars().count()).max().unwrap_or(5).clamp(5, 40);
    let _ = writeln!(
        s,
        "{:<w$} {:>7} {:>8} {:>12} {:>12} {:>11} {:>11} {:>11} {:>7}",
        "layer", "instrs", "vectors", "MACs", "conversions", "busy", "span", "energy", "energy%"
    );
    for l in rows {
        let name: String = safe(&l.name).chars().take(w).collect();
        let _ = writeln!(
            s,
            "{:<w$} {:>7} {:>8} {:>12} {:>12} {:>11} {:>11} {:>11} {:>7.1}",
            name,
            l.instructions,
            l.mvm_vectors,
            l.macs,
            l.conversions,
            time(l.busy_ns),
            time(l.last_ns - l.first_ns),
            energy(l.energy_pj),
            share(l.energy_pj, t.energy_pj)
        );
    }
    let _ = writeln!(
        s,
        "total: latency {} ({:.0} cycles at {} GHz), energy {}; {} MACs; {:.4} TOPS/W, {:.3} GOPS",
        time(t.latency_ns),
        t.cycles,
        r.clock_ghz,
        energy(t.energy_pj),
        t.macs,
        t.tops_per_w,
        t.gops
    );
    let _ = writeln!(
        s,
        "steady state: one inference every {} ({:.1}/s), {:.3} GOPS at {:.4} W",
        time(t.interval_ns),
        t.inferences_per_s,
        t.steady_gops,
        t.steady_power_w
    );
    let _ = writeln!(
        s,
        "steady state: arrays busy {:.2} % of the {} used, {:.3} % of the chip's {}; latency of one inference {}",
        100.0 * r.utilization.steady_used,
        r.utilization.used_arrays,
        100.0 * r.utilization.steady,
        r.utilization.arrays,
        time(t.latency_ns)
    );
    let parts: Vec<String> = t
        .energy
        .components()
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(n, v)| format!("{n} {} ({:.1} %)", energy(*v), share(*v, t.energy_pj)))
        .collect();
    let _ =
        writeln!(s, "energy: {}", if parts.is_empty() { "none".into() } else { parts.join(", ") });
    // The cost breakdown by unit, for a stream with products of two activations (a transformer):
    // what share stays outside the arrays (a CNN's summary is unchanged; its JSON has it).
    let b = &t.breakdown;
    if b.digital_matrix.instructions > 0 {
        let kinds = [
            ("crossbar", &b.crossbar),
            ("digital matrix", &b.digital_matrix),
            ("vector", &b.vector),
            ("movement", &b.movement),
        ];
        let each: Vec<String> = kinds
            .iter()
            .map(|(n, w)| {
                format!(
                    "{n} {:.1} % of the energy, {:.0} busy cycles",
                    100.0 * w.energy_share,
                    w.busy_cycles
                )
            })
            .collect();
        let _ = writeln!(s, "by unit: {}", each.join("; "));
    }
    chip_lines(&mut s, r);
    if let Some(b) = r.cores.iter().max_by(|a, b| a.busy_ns.total_cmp(&b.busy_ns)) {
        let _ = writeln!(
            s,
            "cores: busiest core {} busy {} ({:.1} %); arrays busy on average: {:.1} % of the {} used, {:.2} % of the chip's {}",
            b.core,
            time(b.busy_ns),
            share(b.busy_ns, t.latency_ns),
            100.0 * r.utilization.mean_used,
            r.utilization.used_arrays,
            100.0 * r.utilization.mean,
            r.utilization.arrays
        );
    }
    for c in r.cores.iter().filter(|c| c.over_capacity) {
        let _ = writeln!(
            s,
            "core {}: scratchpad footprint {} bytes EXCEEDS its {} bytes ({} words touched)",
            c.core, c.footprint_bytes, c.capacity_bytes, c.high_water_words
        );
    }
    if t.counts.host_ops > 0 {
        let _ = writeln!(
            s,
            "host: {} operations on {} values (host work, not counted in chip time or energy)",
            t.counts.host_ops, t.counts.host_elements
        );
    }
    if r.preload.groups > 0 {
        let _ = writeln!(
            s,
            "loading the stream programs {} groups ({} cells): {}, {} (once, not per inference)",
            r.preload.groups,
            r.preload.cells,
            energy(r.preload.energy_pj),
            time(r.preload.latency_ns)
        );
    }
    s
}

/// The chip lines of the table: the converters at the target's resolutions, the chip's area
/// and static power by component, TOPS/mm² and the energy with static power.
fn chip_lines(s: &mut String, r: &CostReport) {
    let (c, t) = (&r.chip, &r.totals);
    let v = &c.converters;
    let _ = writeln!(
        s,
        "converters: {}-bit ADC {:.4} pJ per conversion at {:.4} GS/s ({} law from {} bits), \
         {}-bit DAC {:.4} pJ per row per slice",
        v.adc_bits,
        v.adc_energy_pj,
        v.adc_rate_gsps,
        v.adc_energy_law,
        v.adc_ref_bits,
        v.dac_bits,
        v.dac_energy_pj
    );
    if c.area_mm2 > 0.0 {
        let parts: Vec<String> = c
            .components
            .iter()
            .filter(|p| p.area_mm2 > 0.0)
            .map(|p| format!("{} {:.1} %", p.name, share(p.area_mm2, c.area_mm2)))
            .collect();
        let _ = writeln!(
            s,
            "chip: {:.2} mm² ({} arrays, {} cores): {}; {:.4} GOPS/mm² in steady state",
            c.area_mm2,
            c.arrays,
            c.cores,
            parts.join(", "),
            1000.0 * c.tops_per_mm2
        );
    } else {
        let _ = writeln!(s, "chip: {} arrays, {} cores; no area figures", c.arrays, c.cores);
    }
    if c.static_mw > 0.0 {
        let _ = writeln!(
            s,
            "static power {:.3} mW x latency = {} ({:.1} % of the energy with it); {:.4} TOPS/W \
             with static power",
            c.static_mw,
            energy(c.static_pj),
            share(c.static_pj, c.energy_with_static_pj),
            c.tops_per_w_with_static
        );
    } else {
        let _ = writeln!(s, "static power: none stated by the target ({:.4} TOPS/W)", t.tops_per_w);
    }
}

/// Arrays busy over time, energy by component and energy per layer, as one SVG.
pub fn svg(r: &CostReport) -> String {
    let t = &r.totals;
    let (unit, f) = if t.latency_ns >= 1e6 {
        ("ms", 1e-6)
    } else if t.latency_ns >= 1e3 {
        ("µs", 1e-3)
    } else {
        ("ns", 1.0)
    };
    let u = &r.utilization;
    // Busy arrays as a percentage of the arrays the stream uses (a small model on a large chip
    // would otherwise be a flat line at 0).
    let scale =
        if u.used_arrays > 0 { 100.0 * u.arrays as f64 / u.used_arrays as f64 } else { 0.0 };
    let util: Vec<f64> = u.bins.iter().map(|b| b * scale).collect();
    let peak = util.iter().copied().fold(0.0, f64::max);
    let over_time = svg::steps(
        &format!(
            "{} on {}: arrays busy in an mvm (mean {:.1} % of the {} arrays used, {:.2} % of the chip's {})",
            r.stream,
            r.target,
            100.0 * u.mean_used,
            u.used_arrays,
            100.0 * u.mean,
            u.arrays
        ),
        &format!("time ({unit})"),
        "% of the arrays used",
        t.latency_ns * f,
        &util,
        y_top(peak),
    );
    let comps = t.energy.components();
    let labels: Vec<String> = comps.iter().map(|(n, _)| n.to_string()).collect();
    let (eu, ef) = energy_unit(comps.iter().map(|c| c.1).fold(0.0, f64::max));
    let e: Vec<f64> = comps.iter().map(|(_, v)| v * ef).collect();
    let by_component = svg::bars(
        &format!("energy by component (total {})", energy(t.energy_pj)),
        &labels,
        &[(&format!("energy ({eu})"), &e)],
    );
    let rows: Vec<&LayerCost> = r.layers.iter().chain(r.unattributed.as_ref()).collect();
    let names: Vec<String> = rows.iter().map(|l| l.name.clone()).collect();
    let (lu, lf) = energy_unit(rows.iter().map(|l| l.energy_pj).fold(0.0, f64::max));
    let layer_e: Vec<f64> = rows.iter().map(|l| l.energy_pj * lf).collect();
    let layer_us: Vec<f64> = rows.iter().map(|l| l.busy_ns / 1e3).collect();
    let by_layer = svg::bars(
        "energy and busy time per layer",
        &names,
        &[(&format!("energy ({lu})"), &layer_e), ("busy, summed over cores (µs)", &layer_us)],
    );
    let parts: Vec<_> = r.chip.components.iter().filter(|p| p.area_mm2 > 0.0).collect();
    let area_labels: Vec<String> = parts.iter().map(|p| p.name.clone()).collect();
    let area: Vec<f64> = parts.iter().map(|p| p.area_mm2).collect();
    let by_area = svg::bars(
        &format!(
            "chip area by component (total {:.2} mm², {:.4} GOPS/mm² in steady state)",
            r.chip.area_mm2,
            1000.0 * r.chip.tops_per_mm2
        ),
        &area_labels,
        &[("area (mm²)", &area)],
    );
    svg::stack(&[over_time, by_component, by_layer, by_area])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops() {
        assert_eq!(y_top(0.0), 0.1);
        assert!((y_top(1.7) - 2.0).abs() < 1e-9);
        assert!((y_top(3.0) - 5.0).abs() < 1e-9);
        assert!((y_top(40.0) - 50.0).abs() < 1e-9);
        assert_eq!(y_top(75.0), 100.0);
        assert_eq!(y_top(130.0), 130.0);
    }

    #[test]
    fn units() {
        assert_eq!(time(850.0), "850 ns");
        assert_eq!(time(12_345.0), "12.345 µs");
        assert_eq!(time(4.5e6), "4.500 ms");
        assert_eq!(energy(0.5), "0.500 pJ");
        assert_eq!(energy(2.5e9), "2.500 mJ");
    }

    /// Two cores: each configures group 0 or 1, runs vectors through it, requantizes; core 1
    /// sends its codes to core 0 after a barrier.
    fn two_cores() -> cimc_backends::stream::Stream {
        use cimc_backends::arith::FixedMultiplier;
        use cimc_backends::isa::{Instr, WeightEncoding};
        use cimc_backends::stream::{Core, GroupEntry, RequantEntry, Schedule, Stream};
        let group = |core: u16, layer: u32, arrays: Vec<u32>| GroupEntry {
            core,
            layer,
            replica: 0,
            k: 200,
            n: 16,
            conv_groups: 1,
            in_stride: 200,
            in_offset: 0,
            group_stride: 200,
            out_stride: 16,
            weight_bits: 8,
            weights: vec![1; 3200],
            arrays,
        };
        let code = |g: u16, count: u32| {
            let mut c = vec![
                Instr::XbarConfig {
                    group: g,
                    rows: 128,
                    cols: 128,
                    input_bits: 8,
                    dac_bits: 1,
                    cell_bits: 2,
                    weight_bits: 8,
                    magnitude_bits: 7,
                    encoding: WeightEncoding::Differential,
                    adc_bits: 8,
                    adc_step: 2,
                    input_min: 0,
                    input_zero: 0,
                },
                Instr::Mvm { group: g, src: 0, dst: 4000, count },
                Instr::Requant {
                    table: 0,
                    src: 4000,
                    dst: 5000,
                    len: 16 * count,
                    channel_len: 1,
                    first_channel: 0,
                },
                Instr::Sync { barrier: 0 },
            ];
            if g == 1 {
                c.push(Instr::Send { to: 0, dst: 6000, src: 5000, len: 64, elem_bytes: 1 });
            } else {
                c.push(Instr::Recv { from: 1, len: 64 });
                c.push(Instr::Store { dst: 0, src: 6000, len: 64, elem_bytes: 1 });
            }
            c.push(Instr::Halt {});
            c
        };
        Stream {
            name: "two".into(),
            target: None,
            schedule: Schedule::Pipelined,
            arrays: 8,
            global_words: 1024,
            inputs: vec![],
            outputs: vec![],
            layers: vec!["conv1".into(), "conv2".into()],
            cores: vec![
                Core { scratch_words: 8192, code: code(0, 4), marks: vec![(0, 0)] },
                Core { scratch_words: 8192, code: code(1, 10), marks: vec![(0, 1)] },
            ],
            groups: vec![group(0, 0, vec![0, 1]), group(1, 1, vec![2, 3, 4, 5])],
            windows: vec![],
            requants: vec![RequantEntry {
                scale: vec![],
                bias: vec![0],
                mult: vec![FixedMultiplier { m: 1 << 30, sh: 0 }],
                zero_point: 0,
                lo: 0,
                hi: 255,
            }],
            adds: vec![],
            perms: vec![],
            hosts: vec![],
            digital: vec![],
        }
    }

    #[test]
    fn a_stream_renders() {
        let target = cimc_backends::target::Target::preset("isaac").unwrap();
        let r = cimc_backends::stream::cost::estimate(&two_cores(), &target).unwrap();
        let t = table(&r);
        assert!(t.contains("conv1") && t.contains("conv2") && t.contains("TOPS/W"), "{t}");
        assert!(t.contains("2 cores") && t.contains("steady state"), "{t}");
        let s = svg(&r);
        assert_eq!(s.matches("<svg").count(), 5);
        assert!(s.contains("conv2") && s.contains("crossbar"));
        assert!(s.contains("chip area by component") && s.contains("core_buffer"), "{s}");
        assert!(t.contains("GOPS/mm²") && t.contains("8-bit ADC 1.5625 pJ"), "{t}");
        if let Ok(path) = std::env::var("CIMC_STREAM_REPORT_SVG") {
            std::fs::write(path, &s).unwrap();
            eprintln!("{t}");
        }
        assert_eq!(svg(&r), s, "deterministic");
    }

    #[test]
    fn an_empty_report_renders() {
        let r = CostReport::default();
        let t = table(&r);
        assert!(t.contains("total: latency 0.000 ns"), "{t}");
        let s = svg(&r);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<svg").count(), 5);
    }
}
