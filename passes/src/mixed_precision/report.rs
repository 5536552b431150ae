//! What `mixed-precision` writes: the notes on the graph and the report.

use super::measure::Assignment;
use super::{Analysis, Candidate, Decision};
use crate::config::Budget;
use cimc_ir::{Graph, Note, NoteValue};
use serde_json::json;

impl Analysis<'_> {
    /// Writes the decision into `g`'s notes.
    pub fn apply(&self, g: &mut Graph, d: &Decision) {
        for (l, (layer, &(w, a))) in self.bench.layers.iter().zip(&d.assignment).enumerate() {
            let mut note = Note::new(crate::calibrate::BITS_NOTE)
                .with("wbits", NoteValue::Int(w.into()))
                .with("abits", NoteValue::Int(a.into()))
                .with("widths", NoteValue::Ints(self.wopts[l].iter().map(|x| x.0.into()).collect()))
                .with(
                    "sensitivity",
                    NoteValue::Floats(self.wopts[l].iter().map(|x| sig(x.1, 4)).collect()),
                );
            if self.aopts[l].len() > 1 {
                note.set(
                    "abits_widths",
                    NoteValue::Ints(self.aopts[l].iter().map(|x| x.0.into()).collect()),
                );
                note.set(
                    "abits_sensitivity",
                    NoteValue::Floats(self.aopts[l].iter().map(|x| sig(x.1, 4)).collect()),
                );
            }
            cimc_ir::note::put(&mut g.node_mut(layer.node).notes, note);
        }
    }

    /// The pass's report.
    pub fn report(&self, d: &Decision) -> serde_json::Value {
        let b = d.budget;
        let avg = |a: &Assignment| -> f64 {
            self.bench.layers.iter().zip(a).map(|(l, x)| l.params as f64 * x.0 as f64).sum::<f64>()
                / self.params().max(1.0)
        };
        let cand = |c: &Candidate| {
            json!({
                "label": c.label,
                "cost": sig(self.in_budget_unit(b, c.cost), 6),
                "average_wbits": sig(avg(&c.assignment), 6),
                "predicted_error": sig(c.predicted, 6),
                "measured_error": sig(c.measured, 6),
                "wbits": c.assignment.iter().map(|x| x.0).collect::<Vec<_>>(),
                "abits": c.assignment.iter().map(|x| x.1).collect::<Vec<_>>(),
            })
        };
        let layers: Vec<_> = self
            .bench
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let table = |o: &[(u8, f64)]| {
                    o.iter().map(|x| (x.0.to_string(), json!(sig(x.1, 6)))).collect::<serde_json::Map<_, _>>()
                };
                json!({
                    "name": layer.name,
                    "params": layer.params,
                    "macs": layer.macs,
                    "default": [layer.default.0, layer.default.1],
                    "pinned": layer.pinned_w.is_some() || layer.pinned_a.is_some(),
                    "wbits": d.assignment[l].0,
                    "abits": d.assignment[l].1,
                    "weight_sensitivity": table(&self.wopts[l]),
                    "activation_sensitivity": table(&self.aopts[l]),
                    "costs": d.costs[l].iter().map(|&(w, a, c)| json!({"wbits": w, "abits": a, "cost": sig(c, 6)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "budget": b.to_string(),
            "cost_unit": match b {
                Budget::WeightBits(_) => "average weight bits",
                Budget::Arrays(_) => "arrays",
                Budget::Energy(_) if self.bench.chip().is_some() => "pJ (crossbar, DAC, ADC, shift-and-add)",
                Budget::Energy(_) => "bit operations (MACs x weight bits x input bits)",
            },
            "candidates": self.cx.config.candidate_bits,
            "samples": self.bench.n,
            "baseline_error": sig(self.baseline, 6),
            "sensitivity_seconds": sig(self.seconds, 4),
            "search_seconds": sig(d.seconds, 4),
            "program_runs": self.runs + d.verified.len() as u64,
            "chosen": cand(d.chosen()),
            "uniform": d.uniform.map(|i| cand(&d.verified[i])),
            "verified": d.verified.iter().map(cand).collect::<Vec<_>>(),
            "layers": layers,
            "frontier": d.frontier.iter().map(|f| json!({
                "budget": sig(f[0], 6), "predicted_error": sig(f[1], 6),
                "predicted_cost": sig(f[2], 6), "average_wbits": sig(f[3], 6),
            })).collect::<Vec<_>>(),
        })
    }
}

/// `budget` with the value `v` in its unit.
pub(super) fn budget_text(b: Budget, v: f64) -> String {
    match b {
        Budget::WeightBits(_) => format!("weight-bits={}", sig(v, 4)),
        Budget::Arrays(_) => format!("arrays={v}"),
        Budget::Energy(_) => format!("energy={}", sig(v, 6)),
    }
}

/// `x` rounded to `digits` significant digits (reports and notes stay readable and stable).
pub fn sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log10().floor() as i32;
    let f = 10f64.powi(digits - 1 - e);
    (x * f).round() / f
}
