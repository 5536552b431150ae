//! Reduced float formats and approximate multipliers on the trained CNNs, and the speed of the
//! product-table (LUT) multiplier on ResNet-18 (`docs/approximate.md`).
//!
//! - Formats: top-1 of `mnist_cnn` and `mnist_resnet` with weights and activations in each
//!   format (accumulation fp32, the GEMM path), and with the accumulation in the format too
//!   (every partial sum rounded: the slow loop, on `--acc-limit` images).
//! - Multipliers: top-1 of the W8A8 programs (calibrated on 1,000 training images) with each
//!   approximate multiplier on every digital MAC, and each multiplier's mean absolute error.
//! - ResNet-18 (`../shared/models/resnet18_bn.onnx`, batch 1, one of
//!   `data/imagenet_random_x.npy`): the W8A8 program with `trunc:8`, `drum:4`, `mitchell` and
//!   the EvoApprox `mul8s_1L2H` table, by the scalar table kernel and by the fastest one this
//!   CPU runs, against the exact integer program, all timed in this run (min and median), and
//!   whether each kernel's output equals the scalar one's.
//!
//! `cargo run --release -p cimc-examples --bin formats -- [--limit N] [--acc-limit N]
//!  [--reps N] [--svg FILE] [--json] [--timing-only]` (with `--timing-only` the plot is the
//!  ResNet-18 timing alone)

use cimc::onnx::{self, ImportOptions};
use cimc_examples::{arg, load, time_ms, top1};
use cimc_interp::format::{FloatFormat, Precision};
use cimc_interp::{Runner, Tensor};
use cimc_passes::PassContext;
use cimc_sim::program::multiplier::{LutKernel, Multiplier};
use cimc_sim::program::ProgramRunner;
use std::path::{Path, PathBuf};

const BATCH: usize = 100;
const FORMATS: [&str; 6] = ["fp32", "bf16", "fp16", "e4m3", "e5m2", "e3m2"];
/// The multipliers timed on ResNet-18.
const TIMED: [&str; 4] = ["trunc:8", "drum:4", "mitchell", "table:mul8s_1L2H"];

/// One line of the ResNet-18 timing: a multiplier run by a kernel, ms per image.
struct TimingRow {
    multiplier: String,
    kernel: &'static str,
    min: f64,
    median: f64,
    /// Its output equals the scalar kernel's, bit for bit.
    same_as_scalar: bool,
}

fn multipliers() -> Vec<String> {
    let table = cimc_examples::repo_root().join("examples/multipliers/mul8s_1L2H.mul8");
    ["exact", "trunc:4", "trunc:8", "trunc:10", "drum:3", "drum:4", "drum:6", "mitchell"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("table:{}", table.display())])
        .collect()
}

/// Mean absolute error of a multiplier over its table's operand range, relative to the mean
/// exact product magnitude (percent).
fn mean_error(m: &Multiplier) -> f64 {
    let t = m.table();
    let (lo, hi) = if t.signed { (-128, 127) } else { (0, 255) };
    let (mut err, mut mag) = (0f64, 0f64);
    for a in lo..=hi {
        for b in lo..=hi {
            let p = t.get(a, b).expect("invariant: in range") as f64;
            err += (p - (a * b) as f64).abs();
            mag += ((a * b) as f64).abs();
        }
    }
    100.0 * err / mag
}

/// Top-1 of one model in each float format: `(weights and activations, all three)`; the
/// second on the first `n_acc` images (every partial sum rounded: the slow loop).
type FormatRow = (&'static str, usize, usize, Vec<(f64, f64)>);
/// Top-1 of one model's W8A8 program with each multiplier: `(model, images, [top-1])`.
type MultiplierRow = (&'static str, usize, Vec<f64>);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let limit: Option<usize> = arg(&args, "--limit");
    let acc_limit: usize = arg(&args, "--acc-limit").unwrap_or(1000);
    let reps: usize = arg(&args, "--reps").unwrap_or(5);
    let svg: Option<PathBuf> = arg(&args, "--svg");
    let timing_only = args.iter().any(|a| a == "--timing-only");
    let muls: Vec<(String, Multiplier)> = multipliers()
        .into_iter()
        .map(|s| {
            let m = Multiplier::parse(&s).unwrap_or_else(|e| panic!("{e}"));
            (m.name(), m)
        })
        .collect();

    let mut fmt_rows = Vec::new();
    let mut mul_rows = Vec::new();
    let models = if timing_only { 0 } else { 2 };
    for (name, set) in cimc_examples::trained_cnns().into_iter().take(models) {
        let (fmt, mul) = mnist_accuracy(name, &set, limit, acc_limit, &muls);
        fmt_rows.push(fmt);
        mul_rows.push(mul);
    }
    let timing = resnet18_timing(&muls, reps);
    if timing.is_none() {
        eprintln!("SKIPPED ResNet-18 timing: ../shared/models/resnet18_bn.onnx not found");
    }

    let errors: Vec<f64> = muls.iter().map(|(_, m)| mean_error(m)).collect();
    if json {
        print_json(&fmt_rows, &mul_rows, &muls, &errors, timing.as_deref());
    } else {
        print_markdown(&fmt_rows, &mul_rows, &muls, &errors, timing.as_deref(), reps);
    }
    if let Some(file) = svg {
        write_svg(&file, &fmt_rows, &mul_rows, &muls, timing.as_deref());
    }
}

/// Top-1 of one trained CNN on its test set (the first `limit` images) in each float format
/// and, as a W8A8 program, with each multiplier.
fn mnist_accuracy(
    name: &'static str,
    set: &cimc_examples::DataSet,
    limit: Option<usize>,
    acc_limit: usize,
    muls: &[(String, Multiplier)],
) -> (FormatRow, MultiplierRow) {
    let (x, y) = set.test_set(limit);
    let n_acc = acc_limit.min(y.len());
    let x_acc = cimc::tensor_util::slice_batch(&x, 0, n_acc, n_acc);
    let g = cimc_examples::import_vendored(name, BATCH);
    let eval = |run: &dyn Fn(Vec<Tensor>) -> cimc::Result<Vec<Tensor>>, x: &Tensor, n: usize| {
        let out =
            cimc::model::run_in_chunks(run, BATCH, std::slice::from_ref(x), |_| {}).expect("run");
        top1(&out[0], &y[..n])
    };
    let mut formats = Vec::new();
    for f in FORMATS {
        let fmt = FloatFormat::parse(f).expect("a named format");
        let wa = Precision { weights: fmt, activations: fmt, accumulation: FloatFormat::FP32 };
        let r = Runner::with_precision(&g, wa).unwrap();
        let top_wa = eval(&|t| Ok(r.run(t)?), &x, y.len());
        let r = Runner::with_precision(&g, Precision::uniform(fmt)).unwrap();
        let start = std::time::Instant::now();
        let top_all = eval(&|t| Ok(r.run(t)?), &x_acc, n_acc);
        eprintln!(
            "{name} {f}: w+a {top_wa:.2} %, all {top_all:.2} % ({:.1} s)",
            start.elapsed().as_secs_f64()
        );
        formats.push((top_wa, top_all));
    }

    let calib = set.calib_images(1000);
    let cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    let (p, _) = cimc::compile::compile(g.clone(), &cx, &[]).expect("compile");
    let mut products = Vec::new();
    for (mname, m) in muls {
        let pr = ProgramRunner::with_multiplier(&p, m).unwrap();
        let t = eval(&|t| Ok(pr.run(t)?), &x, y.len());
        eprintln!("{name} {mname}: {t:.2} %");
        products.push(t);
    }
    ((name, y.len(), n_acc, formats), (name, y.len(), products))
}

/// ResNet-18 (from `../shared`, `None` without it): the exact W8A8 program, then each timed
/// multiplier by the scalar table kernel and by the fastest this CPU runs, in the same run.
fn resnet18_timing(muls: &[(String, Multiplier)], reps: usize) -> Option<Vec<TimingRow>> {
    let shared = cimc_examples::repo_root().join("../shared");
    let model = shared.join("models/resnet18_bn.onnx");
    if !model.exists() {
        return None;
    }
    let x = load(&shared.join("data/imagenet_random_x.npy"));
    let x1 = cimc::tensor_util::slice_batch(&x, 0, 1, 1);
    let g = onnx::import_file(&model, &ImportOptions { batch: Some(1), ..Default::default() })
        .expect("import");
    let cx = PassContext { calib: Some(vec![x]), ..Default::default() };
    let (p, _) = cimc::compile::compile(g, &cx, &[]).expect("compile");
    let exact = ProgramRunner::new(&p).unwrap();
    let (ex_min, ex_med) = time_ms(reps, || {
        exact.run(vec![x1.clone()]).unwrap();
    });
    let mut rows = vec![TimingRow {
        multiplier: "exact".into(),
        kernel: "f64 GEMM",
        min: ex_min,
        median: ex_med,
        same_as_scalar: true,
    }];
    let kernels = [LutKernel::Scalar, LutKernel::best()];
    for (name, m) in muls.iter().filter(|(n, _)| TIMED.contains(&n.as_str())) {
        let mut scalar_out = None;
        for (i, &kernel) in kernels.iter().enumerate() {
            if i > 0 && kernel == kernels[0] {
                continue;
            }
            let lut = ProgramRunner::with_multiplier_kernel(&p, m, kernel).unwrap();
            let out = lut.run(vec![x1.clone()]).unwrap()[0].to_f64_vec();
            let same = *scalar_out.get_or_insert_with(|| out.clone()) == out;
            let (min, median) = time_ms(reps, || {
                lut.run(vec![x1.clone()]).unwrap();
            });
            eprintln!("ResNet-18 {name} ({}): {median:.1} ms", kernel.name());
            rows.push(TimingRow {
                multiplier: name.clone(),
                kernel: kernel.name(),
                min,
                median,
                same_as_scalar: same,
            });
        }
    }
    Some(rows)
}

/// `--json`: every table as one object.
fn print_json(
    fmt_rows: &[FormatRow],
    mul_rows: &[MultiplierRow],
    muls: &[(String, Multiplier)],
    errors: &[f64],
    timing: Option<&[TimingRow]>,
) {
    let v = serde_json::json!({
        "formats": fmt_rows.iter().map(|(m, n, na, l)| serde_json::json!({
            "model": m, "images": n, "acc_images": na,
            "top1": FORMATS.iter().zip(l).map(|(f, (wa, all))| (f.to_string(), serde_json::json!({"w+a": wa, "w+a+acc": all}))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "multipliers": mul_rows.iter().map(|(m, n, l)| serde_json::json!({
            "model": m, "images": n,
            "top1": muls.iter().zip(l).map(|((k, _), v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "mean_error_percent": muls.iter().zip(errors).map(|((k, _), e)| (k.clone(), serde_json::json!(e))).collect::<serde_json::Map<_, _>>(),
        "resnet18_ms": timing.map(|rows| rows.iter().map(|r| serde_json::json!({
            "multiplier": r.multiplier, "kernel": r.kernel, "min": r.min, "median": r.median,
            "ratio_median": r.median / rows[0].median, "same_as_scalar": r.same_as_scalar,
        })).collect::<Vec<_>>()),
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}

/// `--svg FILE`: top-1 against format and against multiplier (when the MNIST models ran), and
/// the ResNet-18 timing (when it ran), stacked.
fn write_svg(
    file: &Path,
    fmt_rows: &[FormatRow],
    mul_rows: &[MultiplierRow],
    muls: &[(String, Multiplier)],
    timing: Option<&[TimingRow]>,
) {
    let fl: Vec<String> = FORMATS.iter().map(|s| s.to_string()).collect();
    let fser: Vec<(String, Vec<f64>)> = fmt_rows
        .iter()
        .map(|(m, _, _, l)| (format!("{m}: top-1 % (w+a+acc)"), l.iter().map(|p| p.1).collect()))
        .collect();
    let ml: Vec<String> = muls.iter().map(|(k, _)| k.clone()).collect();
    let mser: Vec<(String, Vec<f64>)> =
        mul_rows.iter().map(|(m, _, l)| (format!("{m}: top-1 % (W8A8)"), l.clone())).collect();
    let f_series: Vec<(&str, &[f64])> = fser.iter().map(|(a, b)| (a.as_str(), &b[..])).collect();
    let m_series: Vec<(&str, &[f64])> = mser.iter().map(|(a, b)| (a.as_str(), &b[..])).collect();
    let mut panels = Vec::new();
    if !fmt_rows.is_empty() {
        panels.push(cimc::svg::bars(
            "Top-1 vs float format (weights, activations, accumulation)",
            &fl,
            &f_series,
        ));
        panels.push(cimc::svg::bars("Top-1 vs 8x8 multiplier of the W8A8 program", &ml, &m_series));
    }
    if let Some(rows) = timing {
        panels.push(timing_panel(rows));
    }
    let doc = cimc::svg::stack(&panels);
    std::fs::write(file, doc).expect("write svg");
    eprintln!("wrote {}", file.display());
}

/// The ResNet-18 timing as bars: one panel per kernel, ms per image (median) per multiplier,
/// the exact program's time in each.
fn timing_panel(rows: &[TimingRow]) -> String {
    let labels: Vec<String> =
        std::iter::once("exact".to_string()).chain(TIMED.iter().map(|s| s.to_string())).collect();
    let mut kernels: Vec<&str> = Vec::new();
    for r in &rows[1..] {
        if !kernels.contains(&r.kernel) {
            kernels.push(r.kernel);
        }
    }
    let series: Vec<(String, Vec<f64>)> = kernels
        .iter()
        .map(|&k| {
            let vals = std::iter::once(rows[0].median)
                .chain(TIMED.iter().map(|m| {
                    rows.iter()
                        .find(|r| r.kernel == k && r.multiplier == *m)
                        .map_or(0.0, |r| r.median)
                }))
                .collect();
            (format!("{k} kernel: ms/image (median)"), vals)
        })
        .collect();
    let refs: Vec<(&str, &[f64])> = series.iter().map(|(a, b)| (a.as_str(), &b[..])).collect();
    cimc::svg::bars(
        "ResNet-18 W8A8, batch 1: exact program vs product-table kernels",
        &labels,
        &refs,
    )
}

fn print_markdown(
    fmt_rows: &[FormatRow],
    mul_rows: &[MultiplierRow],
    muls: &[(String, Multiplier)],
    errors: &[f64],
    timing: Option<&[TimingRow]>,
    reps: usize,
) {
    println!("### Float formats (top-1 %, MNIST test set)\n");
    print!("| format |");
    for (m, n, na, _) in fmt_rows {
        print!(" {m}: w+a ({n} images) | {m}: w+a+acc ({na} images) |");
    }
    println!("\n|---|{}", "---|---|".repeat(fmt_rows.len()));
    for (i, f) in FORMATS.iter().enumerate() {
        print!("| {f} |");
        for (_, _, _, l) in fmt_rows {
            print!(" {:.2} | {:.2} |", l[i].0, l[i].1);
        }
        println!();
    }
    println!("\n### Approximate multipliers (W8A8 program, top-1 %, MNIST test set)\n");
    print!("| multiplier | mean error % |");
    for (m, n, _) in mul_rows {
        print!(" {m} ({n} images) |");
    }
    println!("\n|---|---|{}", "---|".repeat(mul_rows.len()));
    for (i, (k, _)) in muls.iter().enumerate() {
        print!("| {k} | {:.2} |", errors[i]);
        for (_, _, l) in mul_rows {
            print!(" {:.2} |", l[i]);
        }
        println!();
    }
    if let Some(rows) = timing {
        println!("\n### ResNet-18 W8A8 program, batch 1 (min and median of {reps}, same run)\n");
        println!(
            "| multiplier | kernel | min ms | median ms | median / exact | output = scalar's |"
        );
        println!("|---|---|---|---|---|---|");
        for r in rows {
            println!(
                "| {} | {} | {:.1} | {:.1} | {:.2}x | {} |",
                r.multiplier,
                r.kernel,
                r.min,
                r.median,
                r.median / rows[0].median,
                if r.same_as_scalar { "yes" } else { "NO" }
            );
        }
    }
}
