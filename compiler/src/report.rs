//! The mapping report: what the `tile` (and `adc-calibrate`) passes decided, per layer and in
//! total, as JSON (`--report r.json`), as a table on the terminal and as an SVG plot of the
//! arrays and utilization per layer.
//!
//! Utilization of a layer is its weight cells (all replicas) over the cells of the arrays its
//! blocks touch; the total is all weight cells over the cells of all arrays used. The naive
//! mapping it is compared with gives every block an array of its own (one layer per set of
//! arrays, nothing shared).

use crate::svg;
use cimc_ir::{Graph, Placement};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub op: String,
    /// Rows per group (`K`), output columns (`N`), groups.
    pub k: usize,
    pub n: usize,
    pub groups: usize,
    pub encoding: String,
    pub weight_slices: u32,
    pub input_slices: u32,
    pub row_tiles: usize,
    pub column_groups: usize,
    pub blocks: usize,
    pub replicas: usize,
    pub arrays: usize,
    pub weight_cells: usize,
    pub utilization: f64,
    pub adc_range: String,
    /// `e` of the step `2^e` (the largest when steps are per column group).
    pub adc_step_log2: u32,
    pub lossless: bool,
    pub p_max: u64,
    pub clip_rate: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub crossbar_layers: usize,
    pub digital_nodes: usize,
    pub arrays: usize,
    pub chip_arrays: Option<usize>,
    pub weight_cells: usize,
    pub utilization: f64,
    pub naive_arrays: usize,
    pub naive_utilization: f64,
    pub lossless_layers: usize,
    /// Clip rate over all conversions of the calibration data, when measured.
    pub clip_rate: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MappingReport {
    pub model: String,
    pub target: serde_json::Value,
    pub target_hash: String,
    pub layers: Vec<LayerReport>,
    pub totals: Totals,
}

impl MappingReport {
    /// The report of a tiled graph; `target` is the full target description echoed in it.
    pub fn new(g: &Graph, target: serde_json::Value, chip_arrays: usize) -> MappingReport {
        let mut layers = Vec::new();
        let mut digital = 0;
        let mut conversions_weighted = (0.0, 0.0);
        for (_, node) in g.nodes() {
            let m = match &node.placement {
                Placement::Crossbar(m) => m,
                Placement::Digital => {
                    digital += 1;
                    continue;
                }
                Placement::Unplaced => continue,
            };
            let arrays = m.arrays().len();
            let cells = m.weight_cells() * m.replicas;
            let array_cells = arrays * m.geometry.rows * m.geometry.cols;
            // Weight the total clip rate by each layer's conversions per image (vectors are
            // not known here; blocks × slices is proportional within a layer).
            let conv = (m.blocks.len() / m.replicas.max(1)) as f64
                * m.weight_slices as f64
                * m.input_slices as f64;
            if let Some(c) = m.clip_rate {
                conversions_weighted.0 += c * conv;
                conversions_weighted.1 += conv;
            }
            layers.push(LayerReport {
                name: node.name.clone(),
                op: node.op.name().to_string(),
                k: m.k,
                n: m.n,
                groups: m.groups,
                encoding: m.geometry.encoding.name().to_string(),
                weight_slices: m.weight_slices,
                input_slices: m.input_slices,
                row_tiles: m.row_tiles_per_group(),
                column_groups: m.column_groups(),
                blocks: m.blocks.len(),
                replicas: m.replicas,
                arrays,
                weight_cells: cells,
                utilization: if array_cells == 0 { 0.0 } else { cells as f64 / array_cells as f64 },
                adc_range: m.adc_range.name().to_string(),
                adc_step_log2: m.adc_step.iter().copied().max().unwrap_or(0),
                lossless: m.is_lossless(),
                p_max: m.p_max_layer(),
                clip_rate: m.clip_rate,
            });
        }
        let mut all_arrays: Vec<usize> = g
            .nodes()
            .filter_map(|(_, n)| match &n.placement {
                Placement::Crossbar(m) => Some(m.arrays()),
                _ => None,
            })
            .flatten()
            .collect();
        all_arrays.sort_unstable();
        all_arrays.dedup();
        let (rows, cols) = g
            .nodes()
            .find_map(|(_, n)| match &n.placement {
                Placement::Crossbar(m) => Some((m.geometry.rows, m.geometry.cols)),
                _ => None,
            })
            .unwrap_or((0, 0));
        let cells: usize = layers.iter().map(|l| l.weight_cells).sum();
        let naive: usize = layers.iter().map(|l| l.blocks).sum();
        let util = |arrays: usize| {
            if arrays == 0 {
                0.0
            } else {
                cells as f64 / (arrays * rows * cols) as f64
            }
        };
        let totals = Totals {
            crossbar_layers: layers.len(),
            digital_nodes: digital,
            arrays: all_arrays.len(),
            chip_arrays: (chip_arrays > 0).then_some(chip_arrays),
            weight_cells: cells,
            utilization: util(all_arrays.len()),
            naive_arrays: naive,
            naive_utilization: util(naive),
            lossless_layers: layers.iter().filter(|l| l.lossless).count(),
            clip_rate: (conversions_weighted.1 > 0.0)
                .then(|| conversions_weighted.0 / conversions_weighted.1),
        };
        MappingReport {
            model: g.name.clone(),
            target,
            target_hash: g.target.as_ref().map(|t| t.hash.clone()).unwrap_or_default(),
            layers,
            totals,
        }
    }

    /// The table printed on the terminal.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let name = self.target.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        let _ = writeln!(s, "target {name} (hash {})", self.target_hash);
        let w = self.layers.iter().map(|l| terminal_safe(&l.name).chars().count());
        let w = w.max().unwrap_or(5).clamp(5, 40);
        let _ = writeln!(
            s,
            "{:<w$} {:>6} {:>6} {:>4} {:>5} {:>6} {:>6} {:>7} {:>5} {:>8} {:>9}",
            "layer", "K", "N", "grp", "w×x", "blocks", "arrays", "util %", "repl", "adc", "clip %"
        );
        for l in &self.layers {
            let name: String = terminal_safe(&l.name).chars().take(w).collect();
            let adc = if l.lossless {
                "exact".to_string()
            } else {
                format!("{} 2^{}", &l.adc_range, l.adc_step_log2)
            };
            let clip = l.clip_rate.map_or("-".to_string(), percent);
            let _ = writeln!(
                s,
                "{:<w$} {:>6} {:>6} {:>4} {:>5} {:>6} {:>6} {:>7.1} {:>5} {:>8} {:>9}",
                name,
                l.k,
                l.n,
                l.groups,
                format!("{}×{}", l.weight_slices, l.input_slices),
                l.blocks,
                l.arrays,
                100.0 * l.utilization,
                l.replicas,
                adc,
                clip
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            s,
            "total: {} crossbar layers, {} digital nodes; {} arrays, utilization {:.1} % (naive one block per array: {} arrays, {:.1} %); {} lossless layers{}{}",
            t.crossbar_layers,
            t.digital_nodes,
            t.arrays,
            100.0 * t.utilization,
            t.naive_arrays,
            100.0 * t.naive_utilization,
            t.lossless_layers,
            t.clip_rate.map_or(String::new(), |c| format!("; clip rate {} %", percent(c))),
            match t.chip_arrays {
                Some(c) if t.arrays > c => format!("; EXCEEDS the chip's {c} arrays (weights would be reloaded)"),
                Some(c) => format!("; the chip has {c}"),
                None => String::new(),
            }
        );
        s
    }

    /// Arrays and utilization per layer, as an SVG bar chart.
    pub fn svg(&self) -> String {
        let labels: Vec<String> = self.layers.iter().map(|l| l.name.clone()).collect();
        let util: Vec<f64> = self.layers.iter().map(|l| 100.0 * l.utilization).collect();
        let arrays: Vec<f64> = self.layers.iter().map(|l| l.arrays as f64).collect();
        let name = self.target.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        svg::bars(
            &format!("{}: arrays and utilization per layer on {name}", self.model),
            &labels,
            &[("arrays", &arrays), ("utilization %", &util)],
        )
    }
}

/// A rate as a percentage that stays readable when tiny: `0`, `0.0123`, `3.2e-6`.
fn percent(rate: f64) -> String {
    let p = 100.0 * rate;
    if p == 0.0 {
        "0".into()
    } else if p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The bit widths a quantized graph uses, per matrix layer, as the TOML that `--bits` reads:
/// `wbits` from the weights' codes and `abits` from the layer's output codes (left out when the
/// output is a 32-bit accumulator read-out).
pub fn bits_toml(g: &Graph) -> String {
    let mut s = String::new();
    for (_, n) in g.nodes() {
        if !matches!(n.op, cimc_ir::Op::Conv(_) | cimc_ir::Op::Gemm { .. } | cimc_ir::Op::MatMul) {
            continue;
        }
        let Some(wq) = n.inputs.get(1).and_then(|&w| g.ty(w).quant.as_ref()) else { continue };
        s.push_str(&format!("[layers.{:?}]\nwbits = {}\n", n.name, wq.bits));
        if let Some(yq) = n.outputs.first().and_then(|&y| g.ty(y).quant.as_ref()) {
            if yq.bits < 32 {
                s.push_str(&format!("abits = {}\n", yq.bits));
            }
        }
        s.push('\n');
    }
    s
}

/// `name` (from a model file) as the terminal may show it: control characters (newlines,
/// escape sequences, carriage returns) and bidirectional overrides escaped (`\u{1b}`), so a
/// table row stays one row and nothing acts on the terminal.
pub fn terminal_safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Unicode bidirectional formatting characters (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}')
        || matches!(c, '\u{2066}'..='\u{2069}')
}

/// Removes every wall-clock field (a key holding `seconds`: `seconds`, `exact_seconds`,
/// `seconds_per_trial`) from a report, at any depth: a
/// report file is then the same bytes for the same inputs, run after run. Times are kept where
/// a user asks for them (`--time-passes`, the terminal summary, `--json` on stdout).
pub fn strip_wall_clock(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !k.contains("seconds"));
            m.values_mut().for_each(strip_wall_clock);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_wall_clock),
        _ => {}
    }
}

#[cfg(test)]
mod wall_clock_tests {
    #[test]
    fn wall_clock_fields_leave_at_every_depth() {
        let mut v = serde_json::json!({"a": 1, "seconds": 2.0,
            "rows": [{"exact_seconds": 1.0, "seconds_per_trial": 0.5, "top1": 99.0}],
            "p": {"sensitivity_seconds": 3}, "drift_time_s": 1.0});
        super::strip_wall_clock(&mut v);
        let kept =
            serde_json::json!({"a": 1, "rows": [{"top1": 99.0}], "p": {}, "drift_time_s": 1.0});
        assert_eq!(v, kept);
    }
}
