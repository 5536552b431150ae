//! Cascade weight downsampling (`docs/cascade.md`): one W8A8 program run at every weight width
//! 8..2 without recompiling, next to programs quantized independently at each width.
//!
//! Per model (mnist_cnn, mnist_resnet) and chip (digital; for the models in `--crossbar`, the
//! `isaac` preset with each ADC resolution of `--adc-bits`: 8 is its own, lossless in practice
//! on MNIST; 5 makes the ADC steps coarse), the top-1 on the test set (all 10,000 MNIST images when `../shared` is there)
//! of: the program compiled once with `--cascade 2` and run at `--cascade-wbits b`; the same without the
//! `cascade` pass (min-max 8-bit scales, derived); independent W b A8 programs (min-max and MSE
//! weight scales). Then the storage of one cascade program against the seven independent ones
//! (`.cimp` bytes and weight bits), and the compile time of one program against the time to
//! switch its width (`ProgramRunner::with_weight_widths`).
//!
//! `cargo run --release -p cimc-examples --bin cascade -- [--limit N] [--calib-samples N]
//!  [--models mnist_cnn,mnist_resnet] [--crossbar mnist_cnn] [--adc-bits 8,5]`

use cimc_backends::program::{Program, Step};
use cimc_backends::target::Target;
use cimc_examples::{arg, time_ms, top1};
use cimc_passes::config::WeightMethod;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::program::{ProgramRunner, WeightWidths};
use std::time::Instant;

const BATCH: usize = 100;
const WIDTHS: [u32; 7] = [8, 7, 6, 5, 4, 3, 2];

/// What one (model, chip) gives.
struct Result {
    title: String,
    /// Per width: cascade, cascade without the pass, independent min-max, independent MSE.
    top1: Vec<[f64; 4]>,
    cascade_bytes: usize,
    independent_bytes: usize,
    params: usize,
    compile_ms: f64,
    switch_ms: f64,
}

fn params(p: &Program) -> usize {
    p.steps
        .iter()
        .map(|s| match s {
            Step::Conv { weights, .. } | Step::Gemm { weights, .. } => weights.data.len(),
            _ => 0,
        })
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: Option<usize> = arg(&args, "--limit");
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(1000);
    let models: String = arg(&args, "--models").unwrap_or_else(|| "mnist_cnn,mnist_resnet".into());
    let crossbar: String = arg(&args, "--crossbar").unwrap_or_else(|| "mnist_cnn".into());
    let adc_bits: String = arg(&args, "--adc-bits").unwrap_or_else(|| "8,5".into());
    let targets: Vec<Target> = adc_bits
        .split(',')
        .map(|a| {
            let mut t = cimc_examples::isaac_differential();
            t.chip.crossbar.adc_bits =
                a.trim().parse().expect("--adc-bits: a list of ADC resolutions");
            t.validate("--adc-bits").expect("a valid ADC resolution");
            t
        })
        .collect();
    let mut results = Vec::new();
    for (name, set) in cimc_examples::trained_cnns() {
        if !models.split(',').any(|m| m == name) {
            continue;
        }
        let (x, y) = set.test_set(limit);
        let calib = set.calib_images(calib_n);
        let g = cimc_examples::import_vendored(name, BATCH);
        let mut chips: Vec<Option<&Target>> = vec![None];
        if crossbar.split(',').any(|m| m == name) {
            chips.extend(targets.iter().map(Some));
        }
        for chip in chips {
            let compile = |wbits: u8, cascade: Option<u8>, method: WeightMethod| -> Program {
                let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
                cx.config.wbits = wbits;
                cx.config.weight_method = method;
                cx.config.cascade_min_bits = cascade;
                cx.chip = chip.map(|t| Chip::from_target(t, None));
                cimc::compile::compile(g.clone(), &cx, &[]).expect("compile").0
            };
            let eval = |r: &ProgramRunner| -> f64 {
                let out = cimc::model::run_in_chunks(
                    |t| Ok(r.run(t)?),
                    BATCH,
                    std::slice::from_ref(&x),
                    |_| {},
                )
                .expect("run");
                top1(&out[0], &y)
            };
            let at = |p: &Program, b: u32| {
                ProgramRunner::with_weight_widths(p, &WeightWidths::uniform(b)).expect("widths")
            };
            let start = Instant::now();
            let cascade = compile(8, Some(2), WeightMethod::MinMax);
            let compile_ms = start.elapsed().as_secs_f64() * 1e3;
            let plain = compile(8, None, WeightMethod::MinMax);
            let mut top = Vec::new();
            let mut independent_bytes = 0;
            for b in WIDTHS {
                eprintln!("{name} {}: {b} bits", chip.map_or(0, |t| t.chip.crossbar.adc_bits));
                let (mm, mse) = if b == 8 {
                    (plain.clone(), compile(8, None, WeightMethod::Mse))
                } else {
                    (
                        compile(b as u8, None, WeightMethod::MinMax),
                        compile(b as u8, None, WeightMethod::Mse),
                    )
                };
                independent_bytes += mm.to_bytes().len();
                top.push([
                    eval(&at(&cascade, b)),
                    eval(&at(&plain, b)),
                    eval(&ProgramRunner::new(&mm).expect("prepare")),
                    eval(&ProgramRunner::new(&mse).expect("prepare")),
                ]);
            }
            let switch_ms = time_ms(5, || {
                std::hint::black_box(at(&cascade, 4));
            })
            .1;
            results.push(Result {
                title: format!(
                    "{name}, {} ({} test images)",
                    chip.map_or("digital".to_string(), |t| format!(
                        "{} crossbars, {}-bit ADC",
                        t.name, t.chip.crossbar.adc_bits
                    )),
                    y.len()
                ),
                top1: top,
                cascade_bytes: cascade.to_bytes().len(),
                independent_bytes,
                params: params(&cascade),
                compile_ms,
                switch_ms,
            });
        }
    }
    println!("### Top-1 (%) at each weight width, A8\n");
    println!("| model, chip | b | cascade (`--cascade 2`) | cascade, min-max W8 scales | independent W b (min-max) | independent W b (MSE) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &results {
        for (b, t) in WIDTHS.iter().zip(&r.top1) {
            println!(
                "| {} | {b} | {:.2} | {:.2} | {:.2} | {:.2} |",
                if *b == 8 { r.title.as_str() } else { "" },
                t[0],
                t[1],
                t[2],
                t[3]
            );
        }
    }
    println!("\n### Storage and switching\n");
    println!("| model, chip | weights | one cascade program | seven independent programs | weight bits, cascade | weight bits, seven | compile one (ms) | switch width (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let seven: usize = WIDTHS.iter().map(|&b| b as usize).sum();
        println!(
            "| {} | {} | {} B | {} B | {} | {} | {:.0} | {:.2} |",
            r.title,
            r.params,
            r.cascade_bytes,
            r.independent_bytes,
            r.params * 8,
            r.params * seven,
            r.compile_ms,
            r.switch_ms
        );
    }
}
