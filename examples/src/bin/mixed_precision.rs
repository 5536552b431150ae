//! The `mixed-precision` pass on mnist_resnet: per-layer weight widths chosen under a weight
//! budget (average bits), against uniform widths, top-1 on the held-out test set.
//!
//! The sensitivity analysis runs once (`mixed_precision::analyze`, as the pass does); for each
//! budget the search chooses (`Analysis::decide`), the choice is written into the graph as the
//! pass writes it, and the rest of the pipeline compiles the program that is evaluated. The
//! uniform baseline at `floor(budget)` bits has the same weight memory when the budget is an
//! integer.
//!
//! `cargo run --release -p cimc-examples --bin mixed_precision -- [--target isaac]
//! [--calib-samples N] [--limit N] [--svg FILE]`
//!
//! Prints a markdown table and writes the frontier plot (`docs/mixed-precision-frontier.svg`,
//! or `...-TARGET.svg` with a target).

use cimc_examples::{arg, top1};
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_passes::config::Budget;
use cimc_passes::{mixed_precision, PassContext, Pipeline};
use cimc_sim::program::ProgramRunner;
use std::time::Instant;

const BATCH: usize = 64;
const BUDGETS: [f64; 9] = [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0];

/// The passes before and after `mixed-precision`.
fn split_pipeline() -> (Vec<&'static str>, Vec<&'static str>) {
    let names = cimc_passes::pass_names();
    let at = names.iter().position(|&n| n == "mixed-precision").expect("the pass exists");
    (names[..at].to_vec(), names[at + 1..].to_vec())
}

/// Compiles `g` (a float graph after the passes before `mixed-precision`) with the passes
/// after it, and returns the top-1 of its program on the test set.
fn top1_of(g: &Graph, cx: &PassContext, x: &Tensor, y: &[i64]) -> f64 {
    let mut g = g.clone();
    let after = split_pipeline().1;
    Pipeline::from_names(&after).unwrap().run(&mut g, cx, &[], None).expect("compile");
    let p = cimc_backends::program::lower::lower(&g).expect("lower");
    let pr = ProgramRunner::new(&p).unwrap();
    let out =
        cimc::model::run_in_chunks(|t| Ok(pr.run(t)?), BATCH, std::slice::from_ref(x), |_| {})
            .unwrap();
    top1(&out[0], y)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(1000);
    let target: Option<String> = arg(&args, "--target");
    let limit: Option<usize> = arg(&args, "--limit");
    let set = cimc_examples::trained_cnns().into_iter().find(|c| c.0 == "mnist_resnet").unwrap().1;
    let (x, y) = set.test_set(limit);
    let calib = set.calib_images(calib_n);
    let n_cal = calib.shape()[0];
    let mut g = cimc_examples::import_vendored("mnist_resnet", BATCH);
    let mut cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    if let Some(t) = &target {
        let t = cimc_backends::target::Target::resolve(t).expect("target");
        cx.chip = Some(cimc_passes::tile::Chip::from_target(&t, None));
    }
    let before = split_pipeline().0;
    Pipeline::from_names(&before).unwrap().run(&mut g, &cx, &[], None).expect("front passes");

    let t0 = Instant::now();
    let analysis = mixed_precision::analyze(&g, &cx, false).expect("sensitivity analysis");
    eprintln!(
        "sensitivity: {} layers x {:?}, {} program runs on {} samples, {:.1} s",
        analysis.bench.layers.len(),
        cx.config.candidate_bits,
        analysis.runs,
        analysis.bench.n,
        t0.elapsed().as_secs_f64()
    );
    let float_top1 = {
        let r = cimc_interp::Runner::new(&g).unwrap();
        let out =
            cimc::model::run_in_chunks(|t| Ok(r.run(t)?), BATCH, std::slice::from_ref(&x), |_| {})
                .unwrap();
        top1(&out[0], &y)
    };
    let mut uniform: Vec<(u8, f64)> = Vec::new();
    let mut rows = Vec::new();
    for &b in &BUDGETS {
        let t = Instant::now();
        let d = analysis.decide(Budget::WeightBits(b)).expect("decide");
        let search_s = t.elapsed().as_secs_f64();
        let mut gb = g.clone();
        analysis.apply(&mut gb, &d);
        let chosen = top1_of(&gb, &cx, &x, &y);
        let ub = b.floor() as u8;
        let u = match uniform.iter().find(|u| u.0 == ub) {
            Some(u) => u.1,
            None => {
                let mut cu = PassContext {
                    calib: cx.calib.clone(),
                    chip: cx.chip.clone(),
                    ..Default::default()
                };
                cu.config.wbits = ub;
                let v = top1_of(&g, &cu, &x, &y);
                uniform.push((ub, v));
                v
            }
        };
        let c = d.chosen();
        let params: f64 = analysis.bench.layers.iter().map(|l| l.params as f64).sum();
        let avg: f64 = analysis
            .bench
            .layers
            .iter()
            .zip(&c.assignment)
            .map(|(l, a)| l.params as f64 * a.0 as f64)
            .sum::<f64>()
            / params;
        let widths: Vec<String> = c.assignment.iter().map(|a| a.0.to_string()).collect();
        eprintln!(
            "budget {b}: {} ({avg:.3} bits) top-1 {chosen:.2} %, uniform W{ub} {u:.2} %",
            c.label
        );
        rows.push((b, avg, widths.join(" "), c.label.clone(), c.measured, chosen, ub, u, search_s));
    }
    let chip = target.as_deref().unwrap_or("none, integer program");
    println!(
        "mnist_resnet, {} test images, {} calibration images ({} for the sensitivities), chip: {chip}; float top-1 {float_top1:.2} %; sensitivity analysis {:.1} s ({} program runs)\n",
        y.len(),
        n_cal,
        analysis.bench.n,
        analysis.seconds,
        analysis.runs
    );
    println!("| budget (avg weight bits) | chosen avg bits | chosen widths (layer order) | chosen by | calib error | top-1 chosen | uniform | top-1 uniform | search s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {} | {} | {:.3e} | {:.2} % | W{} | {:.2} % | {:.2} |",
            r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8
        );
    }
    println!(
        "\nlayers: {}",
        analysis
            .bench
            .layers
            .iter()
            .map(|l| format!("{} ({} weights)", l.name, l.params))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let xs: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let chosen: Vec<Option<f64>> = rows.iter().map(|r| Some(r.5)).collect();
    let unif: Vec<Option<f64>> = rows.iter().map(|r| Some(r.7)).collect();
    // The axis shows the interesting range; points below it are named in the title.
    let all: Vec<f64> = rows.iter().flat_map(|r| [r.5, r.7]).collect();
    let y0 = (all.iter().copied().fold(100.0, f64::min).max(98.0) * 2.0).floor() / 2.0;
    let y1 = ((all.iter().copied().fold(0.0, f64::max) + 0.1) * 2.0).ceil() / 2.0;
    let below: Vec<String> = rows
        .iter()
        .filter(|r| r.5 < y0 || r.7 < y0)
        .map(|r| format!("budget {}: chosen {:.2} %, uniform W{} {:.2} %", r.0, r.5, r.6, r.7))
        .collect();
    let mut title = format!("mnist_resnet: top-1 against weight memory (chip: {chip})");
    if !below.is_empty() {
        title.push_str(&format!(" — below the axis: {}", below.join("; ")));
    }
    let svg = cimc::svg::lines(
        &title,
        "weight budget (average bits per weight)",
        "top-1 on the test set (%)",
        &xs,
        &[
            ("mixed precision (chosen)".to_string(), chosen),
            ("uniform at floor(budget) bits".to_string(), unif),
        ],
        (y0, y1.min(100.0)),
    );
    let out = arg::<String>(&args, "--svg").unwrap_or_else(|| {
        let name = match &target {
            Some(t) => format!("docs/mixed-precision-frontier-{t}.svg"),
            None => "docs/mixed-precision-frontier.svg".to_string(),
        };
        cimc_examples::repo_root().join(name).display().to_string()
    });
    std::fs::write(&out, svg).expect("write the plot");
    eprintln!("wrote {out}");
}
