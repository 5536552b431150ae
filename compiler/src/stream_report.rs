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
    let w = rows.iter().map(|l| l.name.chars().count()).max().unwrap_or(5).clamp(5, 40);
    let _ = writeln!(
        s,
        "{:<w$} {:>7} {:>8} {:>12} {:>12} {:>11} {:>11} {:>11} {:>7}",
        "layer", "instrs", "vectors", "MACs", "conversions", "busy", "span", "energy", "energy%"
    );
    for l in rows {
        let name: String = l.name.chars().take(w).collect();
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
    let parts: Vec<String> = t
        .energy
        .components()
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(n, v)| format!("{n} {} ({:.1} %)", energy(*v), share(*v, t.energy_pj)))
        .collect();
    let _ =
        writeln!(s, "energy: {}", if parts.is_empty() { "none".into() } else { parts.join(", ") });
    if let Some(b) = r.cores.iter().max_by(|a, b| a.busy_ns.total_cmp(&b.busy_ns)) {
        let _ = writeln!(
            s,
            "cores: busiest core {} busy {} ({:.1} %); arrays busy {:.1} % of the time on average",
            b.core,
            time(b.busy_ns),
            share(b.busy_ns, t.latency_ns),
            100.0 * r.utilization.mean
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
    let util: Vec<f64> = r.utilization.bins.iter().map(|b| 100.0 * b).collect();
    let peak = util.iter().copied().fold(0.0, f64::max);
    let over_time = svg::steps(
        &format!(
            "{} on {}: arrays busy in an mvm ({} arrays; mean {:.1} %)",
            r.stream,
            r.target,
            r.utilization.arrays,
            100.0 * r.utilization.mean
        ),
        &format!("time ({unit})"),
        "arrays busy %",
        t.latency_ns * f,
        &util,
        if peak > 100.0 { peak } else { 100.0 },
    );
    let comps = t.energy.components();
    let labels: Vec<String> = comps.iter().map(|(n, _)| n.to_string()).collect();
    let nj: Vec<f64> = comps.iter().map(|(_, v)| v / 1e3).collect();
    let by_component = svg::bars(
        &format!("energy by component (total {})", energy(t.energy_pj)),
        &labels,
        &[("energy (nJ)", &nj)],
    );
    let rows: Vec<&LayerCost> = r.layers.iter().chain(r.unattributed.as_ref()).collect();
    let names: Vec<String> = rows.iter().map(|l| l.name.clone()).collect();
    let layer_nj: Vec<f64> = rows.iter().map(|l| l.energy_pj / 1e3).collect();
    let layer_us: Vec<f64> = rows.iter().map(|l| l.busy_ns / 1e3).collect();
    let by_layer = svg::bars(
        "energy and busy time per layer",
        &names,
        &[("energy (nJ)", &layer_nj), ("busy, summed over cores (µs)", &layer_us)],
    );
    svg::stack(&[over_time, by_component, by_layer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(time(850.0), "850 ns");
        assert_eq!(time(12_345.0), "12.345 µs");
        assert_eq!(time(4.5e6), "4.500 ms");
        assert_eq!(energy(0.5), "0.500 pJ");
        assert_eq!(energy(2.5e9), "2.500 mJ");
    }

    #[test]
    fn an_empty_report_renders() {
        let r = CostReport::default();
        let t = table(&r);
        assert!(t.contains("total: latency 0.000 ns"), "{t}");
        let s = svg(&r);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<svg").count(), 4);
    }
}
