//! BN calibration on crossbars: top-1 of the trained MNIST CNNs at W8A8 on the small edge chip
//! (`edge` preset: 64×64 arrays of 1-bit SRAM cells, bit-serial inputs) with 4- and 5-bit ADCs,
//! before and after the `bn-calibrate` pass, and how much of the accuracy the crossbar lost
//! it wins back.
//!
//! `cargo run --release -p cimc-examples --bin bn_calibrate -- [--limit N] [--calib-samples N]
//!  [--models mnist_cnn,mnist_resnet] [--json]`
//!
//! Prints a markdown table (kept in `docs/bn-calibrate.md`). ADC ranges: `calib` (the preset's,
//! a percentile of the calibration partial sums) and `worst` (never clips; coarse steps).

use cimc_backends::target::{AdcRange, Target};
use cimc_examples::{arg, top1};
use cimc_interp::Tensor;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use std::time::Instant;

const BATCH: usize = 100;

struct Row {
    model: &'static str,
    adc_bits: u32,
    range: &'static str,
    digital: f64,
    before: f64,
    after: f64,
    compile_s: f64,
    compile_bn_s: f64,
    images: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let limit: Option<usize> = arg(&args, "--limit");
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(1000);
    let only: String = arg(&args, "--models").unwrap_or("mnist_cnn,mnist_resnet".into());
    let base = Target::preset("edge").expect("the edge preset exists");
    let mut rows = Vec::new();
    for (name, set) in cimc_examples::trained_cnns() {
        if !only.split(',').any(|m| m == name) {
            continue;
        }
        let (x, y) = set.test_set(limit);
        let calib = set.calib_images(calib_n);
        let g = cimc_examples::import_vendored(name, BATCH);
        let eval = |pr: &ProgramRunner| {
            let run = |t: Vec<Tensor>| Ok(pr.run(t)?);
            let out = cimc::model::run_in_chunks(run, BATCH, std::slice::from_ref(&x), |_| {})
                .expect("run");
            top1(&out[0], &y)
        };
        let compile = |chip: Option<Chip>, bn: bool| {
            let mut cx =
                PassContext { calib: Some(vec![calib.clone()]), chip, ..Default::default() };
            cx.config.bn_calibrate = bn;
            let t = Instant::now();
            let (p, _) = cimc::compile::compile(g.clone(), &cx, &[]).expect("compile");
            (ProgramRunner::new(&p).expect("program"), t.elapsed().as_secs_f64(), cx.reports())
        };
        let digital = eval(&compile(None, false).0);
        for adc_bits in [4, 5] {
            for (range, mode) in [("calib", AdcRange::Calib), ("worst", AdcRange::Worst)] {
                let mut t = base.clone();
                t.chip.crossbar.adc_bits = adc_bits;
                t.chip.adc_range = mode;
                let (p0, s0, _) = compile(Some(Chip::from_target(&t, None)), false);
                let (p1, s1, rep) = compile(Some(Chip::from_target(&t, None)), true);
                let row = Row {
                    model: name,
                    adc_bits,
                    range,
                    digital,
                    before: eval(&p0),
                    after: eval(&p1),
                    compile_s: s0,
                    compile_bn_s: s1,
                    images: y.len(),
                };
                eprintln!(
                    "{name}, {adc_bits}-bit ADC ({range}): {:.2} -> {:.2} % (digital {digital:.2})",
                    row.before, row.after
                );
                if !json {
                    for l in rep["bn-calibrate"]["layers"].as_array().into_iter().flatten() {
                        eprintln!(
                            "  {}: mean shift {:.3} -> {:.3} std ratio {:.3} -> {:.3}",
                            l["layer"],
                            l["mean_shift_before"].as_f64().unwrap_or(0.0),
                            l["mean_shift_after"].as_f64().unwrap_or(0.0),
                            l["std_ratio_before"].as_f64().unwrap_or(0.0),
                            l["std_ratio_after"].as_f64().unwrap_or(0.0)
                        );
                    }
                }
                rows.push(row);
            }
        }
    }
    let recovered = |r: &Row| {
        let lost = r.digital - r.before;
        if lost > 0.0 {
            Some(100.0 * (r.after - r.before) / lost)
        } else {
            None
        }
    };
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"model": r.model, "adc_bits": r.adc_bits, "adc_range": r.range,
                "w8a8_digital": r.digital, "before": r.before, "after": r.after,
                "recovered_percent": recovered(r), "compile_seconds": r.compile_s,
                "compile_bn_calibrate_seconds": r.compile_bn_s, "images": r.images})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON values serialize"));
        return;
    }
    println!("| model | ADC | range | W8A8 digital | crossbar | + bn-calibrate | lost points recovered | compile (s) | with bn-calibrate (s) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let rec = recovered(r).map_or("— (nothing lost)".into(), |p| format!("{p:.0} %"));
        println!(
            "| {} | {} bits | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.2} |",
            r.model,
            r.adc_bits,
            r.range,
            r.digital,
            r.before,
            r.after,
            rec,
            r.compile_s,
            r.compile_bn_s
        );
    }
}
