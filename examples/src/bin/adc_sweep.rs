//! Accuracy on crossbars: top-1 of the trained CNNs at W8A8 as the exact crossbar program
//! computes it, against the ADC resolution (`adc.bits` 4..10) and the array rows (64..512), on
//! the ISAAC-like preset otherwise (2-bit cells, 1-bit DAC, differential weights, ADC steps
//! calibrated on the calibration set).
//!
//! `cargo run --release -p cimc-examples --bin adc_sweep -- [--limit N] [--calib-samples N]
//!  [--adc-range calib|worst] [--models mnist_cnn,mnist_resnet,digits_cnn] [--rows 64,128]
//!  [--energy] [--svg DIR] [--json]`
//!
//! Prints a markdown table per model (kept in `docs/crossbar-accuracy.md`) and, with `--svg`,
//! writes one plot per model (accuracy vs ADC bits, one line per array height). With
//! `--energy`, the accuracy on the preset's own 128-row arrays against the ADC energy the cost
//! model gives at each resolution (`docs/cost-model.md`, "Accuracy against ADC energy"): the
//! batch-1 program emitted as a stream and costed, its ADC energy per inference and per
//! conversion, and a plot of top-1 against the ADC energy.

use cimc_backends::stream::cost;
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::target::{AdcRange, Target};
use cimc_examples::{arg, top1};
use cimc_interp::{Runner, Tensor};
use cimc_passes::tile::Chip;
use cimc_passes::{PassContext, Pipeline};
use cimc_sim::program::ProgramRunner;
use std::path::PathBuf;

const BATCH: usize = 100;
const ADC_BITS: [u32; 7] = [4, 5, 6, 7, 8, 9, 10];
const ROWS: [usize; 4] = [64, 128, 256, 512];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let limit: Option<usize> = arg(&args, "--limit");
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(1000);
    let svg_dir: Option<PathBuf> = arg(&args, "--svg");
    let range = match arg::<String>(&args, "--adc-range").as_deref() {
        Some("worst") => AdcRange::Worst,
        _ => AdcRange::Calib,
    };
    let only: Option<String> = arg(&args, "--models");
    let energy = args.iter().any(|a| a == "--energy");
    let rows_only: Option<String> = arg(&args, "--rows");
    let rows: Vec<usize> = ROWS
        .into_iter()
        .filter(|r| rows_only.as_ref().is_none_or(|o| o.split(',').any(|x| x == r.to_string())))
        .collect();
    let cases: Vec<_> = cimc_examples::trained_cnns()
        .into_iter()
        .filter(|(n, _)| only.as_ref().is_none_or(|o| o.split(',').any(|m| m == *n)))
        .collect();
    let base = cimc_examples::isaac_differential();
    let mut all = Vec::new();
    for (name, set) in cases {
        let (x, y) = set.test_set(limit);
        let calib = set.calib_images(calib_n);
        let g = cimc_examples::import_vendored(name, BATCH);
        let eval = |run: &dyn Fn(Vec<Tensor>) -> cimc::Result<Vec<Tensor>>| {
            let out = cimc::model::run_in_chunks(run, BATCH, std::slice::from_ref(&x), |_| {})
                .expect("run");
            top1(&out[0], &y)
        };
        let r = Runner::new(&g).unwrap();
        let float = eval(&|t| Ok(r.run(t)?));
        // Quantize once; each target point then only tiles and calibrates ADCs.
        let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
        let mut q = g.clone();
        cimc::compile::run_pipeline(&mut q, &cx, &[], Some("quantize")).expect("quantize");
        let p = cimc_backends::program::lower::lower(&q).expect("lower");
        let pr = ProgramRunner::new(&p).unwrap();
        let int8 = eval(&|t| Ok(pr.run(t)?));
        // The batch-1 quantized graph whose stream the cost model prices (`--energy`).
        let q1 = energy.then(|| {
            let mut q1 = cimc_examples::import_vendored(name, 1);
            cimc::compile::run_pipeline(&mut q1, &cx, &[], Some("quantize")).expect("quantize");
            q1
        });
        let mut grid = Vec::new();
        let mut costs = Vec::new();
        for &rows in &rows {
            let mut line = Vec::new();
            for bits in ADC_BITS {
                let mut t = base.clone();
                t.chip.crossbar.rows = rows;
                t.chip.crossbar.adc_bits = bits;
                t.chip.adc_range = range;
                cx.chip = Some(Chip::from_target(&t, None));
                let mut tg = q.clone();
                Pipeline::from_names(&["tile", "adc-calibrate"])
                    .expect("passes exist")
                    .run(&mut tg, &cx, &[], None)
                    .expect("tile");
                let p = cimc_backends::program::lower::lower(&tg).expect("lower");
                let pr = ProgramRunner::new(&p).unwrap();
                let acc = eval(&|t| Ok(pr.run(t)?));
                eprintln!("{name}: rows {rows}, adc {bits} bits: {acc:.2} %");
                line.push(acc);
                if let (Some(q1), true) = (&q1, rows == base.chip.crossbar.rows) {
                    costs.push((bits, acc, adc_energy(q1, &cx, &t)));
                }
            }
            grid.push(line);
        }
        all.push((name, float, int8, grid, y.len()));
        if energy {
            energy_table(name, &costs, svg_dir.as_deref());
        }
    }
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|(name, float, int8, grid, n)| {
                serde_json::json!({"model": name, "images": n, "float": float, "w8a8": int8,
                    "adc_bits": ADC_BITS, "rows": rows, "top1": grid})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    let range_name = if range == AdcRange::Calib { "calibrated" } else { "worst-case" };
    for (name, float, int8, grid, n) in &all {
        println!(
            "\n### {name} ({n} test images; float {float:.2} %, W8A8 integer program {int8:.2} %; {range_name} ADC ranges)\n"
        );
        print!("| rows \\ ADC bits |");
        for b in ADC_BITS {
            print!(" {b} |");
        }
        println!();
        println!("|---|{}", "---|".repeat(ADC_BITS.len()));
        for (r, line) in rows.iter().zip(grid) {
            print!("| {r} |");
            for a in line {
                print!(" {a:.2} |");
            }
            println!();
        }
        if let Some(dir) = &svg_dir {
            let xs: Vec<f64> = ADC_BITS.iter().map(|&b| b as f64).collect();
            let mut series: Vec<(String, Vec<Option<f64>>)> = rows
                .iter()
                .zip(grid)
                .map(|(r, l)| (format!("{r} rows"), l.iter().map(|&a| Some(a)).collect()))
                .collect();
            series.push(("W8A8, no crossbar".into(), vec![Some(*int8); xs.len()]));
            let svg = cimc::svg::lines(
                &format!("{name}: top-1 on crossbars vs ADC bits ({range_name} ranges)"),
                "ADC bits",
                "top-1 %",
                &xs,
                &series,
                (0.0, 100.0),
            );
            let f = dir.join(format!("adc_sweep_{name}.svg"));
            std::fs::write(&f, svg).expect("write svg");
            eprintln!("wrote {}", f.display());
        }
    }
}

/// The cost model's ADC figures for the batch-1 quantized graph `q1` tiled for `t`: energy of
/// one conversion (pJ), the ADC energy of one inference and the chip's (pJ).
fn adc_energy(q1: &cimc_ir::Graph, cx: &PassContext, t: &Target) -> (f64, f64, f64) {
    let mut g = q1.clone();
    Pipeline::from_names(&["tile", "adc-calibrate"])
        .expect("passes exist")
        .run(&mut g, cx, &[], None)
        .expect("tile");
    let p = cimc_backends::program::lower::lower(&g).expect("lower");
    let s = emit(&p, t, &EmitOptions::default()).expect("emit");
    let r = cost::estimate(&s, t).expect("estimate");
    (r.chip.converters.adc_energy_pj, r.totals.energy.adc, r.totals.energy_pj)
}

/// Accuracy against ADC energy on the preset's arrays: a markdown table and, with `svg_dir`,
/// a plot of top-1 against the ADC energy per inference (log scale).
fn energy_table(
    name: &str,
    costs: &[(u32, f64, (f64, f64, f64))],
    svg_dir: Option<&std::path::Path>,
) {
    println!("\n### {name}: top-1 against ADC energy (isaac, 128-row arrays)\n");
    println!("| ADC bits | pJ per conversion | ADC energy per inference | chip energy per inference | ADC share | top-1 % |");
    println!("|---|---|---|---|---|---|");
    for (bits, acc, (conv, adc, total)) in costs {
        println!(
            "| {bits} | {conv:.4} | {:.2} nJ | {:.2} nJ | {:.1} % | {acc:.2} |",
            adc / 1e3,
            total / 1e3,
            100.0 * adc / total
        );
    }
    let Some(dir) = svg_dir else { return };
    let xs: Vec<f64> = costs.iter().map(|c| (c.2 .1 / 1e3).log10()).collect();
    let series = vec![(
        "isaac, 128 rows (labels: ADC bits 4..10)".to_string(),
        costs.iter().map(|c| Some(c.1)).collect::<Vec<_>>(),
    )];
    let svg = cimc::svg::lines(
        &format!("{name}: top-1 against the ADC energy per inference (4..10-bit ADCs, isaac)"),
        "log10 of the ADC energy per inference (nJ)",
        "top-1 %",
        &xs,
        &series,
        (0.0, 100.0),
    );
    let f = dir.join(format!("adc_energy_{name}.svg"));
    std::fs::write(&f, svg).expect("write svg");
    eprintln!("wrote {}", f.display());
}
