//! `cimc run MODEL --input x.npy --profile [N]`: where a float run's time goes, step by step.
//! The graph is run once to warm up (buffers, pages, thread pool), then `N` times with each
//! step timed; a step's figure is its minimum over the runs (the least disturbed by other
//! processes). The table lists the slowest steps and the time per op kind, the figures
//! `docs/performance.md` quotes.

use super::print_json;
use cimc::{Error, Result};
use cimc_interp::{Runner, StepTime, Tensor};
use std::collections::BTreeMap;

/// Per-step minimum times over `reps` profiled runs (after one warm-up run).
pub fn profile(runner: &Runner, inputs: &[Tensor], reps: usize) -> Result<Vec<StepTime>> {
    runner.run(inputs.to_vec())?;
    let mut best: Vec<StepTime> = Vec::new();
    for _ in 0..reps.max(1) {
        let (_, times) = runner.run_profiled(inputs.to_vec())?;
        if best.is_empty() {
            best = times;
            continue;
        }
        if times.len() != best.len() {
            return Err(Error::Internal("profiled runs took different steps".into()));
        }
        for (b, t) in best.iter_mut().zip(times) {
            b.time = b.time.min(t.time);
        }
    }
    Ok(best)
}

/// Prints the profile: the `top` slowest steps, then the total per op kind.
pub fn print(steps: &[StepTime], top: usize, json: bool) {
    let total: f64 = steps.iter().map(|s| s.time.as_secs_f64()).sum();
    let ms = |s: f64| s * 1e3;
    let mut kinds: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for s in steps {
        let e = kinds.entry(s.ops.as_str()).or_default();
        e.0 += 1;
        e.1 += s.time.as_secs_f64();
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    // Slowest first; ties by name so the order is deterministic.
    kinds.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1).then(a.0.cmp(b.0)));
    let mut order: Vec<&StepTime> = steps.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then(a.node.cmp(&b.node)));
    if json {
        let steps: Vec<_> = steps
            .iter()
            .map(|s| {
                serde_json::json!({"node": s.node, "ops": s.ops, "ms": ms(s.time.as_secs_f64())})
            })
            .collect();
        let kinds: Vec<_> = kinds
            .iter()
            .map(|(k, (n, t))| serde_json::json!({"ops": k, "steps": n, "ms": ms(*t)}))
            .collect();
        print_json(&serde_json::json!({"total_ms": ms(total), "steps": steps, "kinds": kinds}));
        return;
    }
    let pct = |t: f64| if total > 0.0 { 100.0 * t / total } else { 0.0 };
    println!("{:<40} {:<28} {:>9} {:>6}", "step (node)", "ops", "ms", "%");
    for s in order.iter().take(top) {
        let t = s.time.as_secs_f64();
        println!("{:<40} {:<28} {:>9.3} {:>5.1}%", s.node, s.ops, ms(t), pct(t));
    }
    if order.len() > top {
        println!("... {} more steps", order.len() - top);
    }
    println!();
    println!("{:<40} {:>6} {:>9} {:>6}", "ops", "steps", "ms", "%");
    for (k, (n, t)) in &kinds {
        println!("{:<40} {:>6} {:>9.3} {:>5.1}%", k, n, ms(*t), pct(*t));
    }
    println!("{:<40} {:>6} {:>9.3}", "total (sum of step minima)", steps.len(), ms(total));
}
