//! Accuracy under analog non-idealities (`docs/hardware-model.md` §5, `docs/noise.md`): Monte Carlo
//! top-1 of `mnist_cnn` (W8A8) on the ISAAC-like preset at three levels of programming variation
//! and two of read noise, the time per noisy trial next to one exact run, and the drift table of a
//! PCM-like target (`targets/pcm.toml`, its whole `[noise]` table) at 1 s, 1 h, 1 d and 1 y after
//! programming, without and with global drift compensation.
//!
//! `--only effects` (not run by default) makes the table of each device effect alone
//! ([`effects`]) on `mnist_cnn` and `mnist_resnet`, and `--only ir` the first-order IR-drop
//! model's error against the nodal solve.
//!
//! `cargo run --release -p cimc-examples --bin noise -- [--limit N] [--trials N]
//!  [--drift-trials N] [--effect-trials N] [--seed S] [--svg DIR]
//!  [--only variation|drift|effects|ir]`
//!
//! Prints markdown tables (kept in `docs/noise.md`) and, with `--svg DIR`, writes
//! `noise-variation.svg`, `noise-drift.svg` and (effects) `noise-effects.svg` and
//! `noise-ir-drop.svg` there.

use cimc::noise_eval::{monte_carlo, McReport, Scenario};
use cimc_backends::noise::{IrModel, NoiseSpec, NuModel};
use cimc_backends::program::Program;
use cimc_backends::target::Target;
use cimc_examples::{arg, load};
use cimc_interp::Tensor;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::noise::NoiseConfig;
use cimc_sim::program::ProgramRunner;
use std::path::PathBuf;

const BATCH: usize = 100;
const SIGMAS: [f64; 3] = [0.1, 0.2, 0.4];
/// Read noise alone (`σ_r`, cell levels), for its cost next to programming variation.
const READ_SIGMAS: [f64; 2] = [0.1, 0.5];
const TIMES: [(&str, f64); 4] =
    [("1 s", 1.0), ("1 h", 3600.0), ("1 d", 86400.0), ("1 y", 365.0 * 86400.0)];

fn compile(t: &Target, calib: &Tensor) -> Program {
    compile_model("mnist_cnn", t, calib)
}

fn compile_model(model: &str, t: &Target, calib: &Tensor) -> Program {
    let g = cimc_examples::import_vendored(model, BATCH);
    let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
    cx.chip = Some(Chip::from_target(t, None));
    cimc::compile::compile(g, &cx, &[]).expect("compile").0
}

/// CPU seconds used by the whole process so far (user + system, every thread), from
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux's fixed `USER_HZ`); `None` elsewhere.
/// On a shared machine this, unlike wall time, does not count the time other jobs hold the
/// cores.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): utime and
    // stime are fields 14 and 15 of the line, 12 and 13 after the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU time of one exact run and of one noisy trial (the mean of `trials`) for each spec, run
/// one after the other (trials in parallel, as `monte_carlo` runs them).
fn cpu_costs(r: &ProgramRunner, x: &Tensor, y: &[i64], specs: &[(&str, NoiseSpec)], trials: usize) {
    let none = |_: usize| {};
    let Some(c0) = process_cpu_seconds() else {
        return;
    };
    cimc::noise_eval::exact_top1(r, BATCH, x, y, &none).expect("exact run");
    let c1 = process_cpu_seconds().unwrap_or(c0);
    let exact = c1 - c0;
    println!(
        "\nCPU time (user + system, all threads; /proc/self/stat): one exact run {exact:.2} s"
    );
    let mut before = c1;
    for (name, spec) in specs {
        let cfg = NoiseConfig::new(spec.clone(), 1);
        cimc::noise_eval::trials_top1(r, BATCH, x, y, &cfg, trials, &none).expect("trials");
        let now = process_cpu_seconds().unwrap_or(before);
        let per = (now - before) / trials as f64;
        println!("\n{name}: {per:.2} CPU s per trial, {:.2}x one exact run", per / exact);
        before = now;
    }
}

fn table(r: &McReport, what: &str) -> String {
    let mut s = format!(
        "| {what} | mean top-1 % | std | min % | max % | s / trial |\n|---|---:|---:|---:|---:|---:|\n"
    );
    s += &format!(
        "| exact | {:.2} | – | {:.2} | {:.2} | {:.2} (one exact run) |\n",
        r.exact_top1, r.exact_top1, r.exact_top1, r.exact_seconds
    );
    for sc in &r.scenarios {
        s += &format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            sc.label, sc.mean, sc.std, sc.min, sc.max, sc.seconds_per_trial
        );
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: usize = arg(&args, "--limit").unwrap_or(1000);
    let trials: usize = arg(&args, "--trials").unwrap_or(20);
    let drift_trials: usize = arg(&args, "--drift-trials").unwrap_or(10);
    let seed: u64 = arg(&args, "--seed").unwrap_or(1);
    let svg_dir: Option<PathBuf> = arg(&args, "--svg");
    let (_, set) = cimc_examples::trained_cnns().into_iter().next().expect("mnist_cnn");
    let (x, y) = set.test_set(Some(limit));
    let calib = load(&set.calib);
    let only: Option<String> = arg(&args, "--only");
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    if part("variation") {
        variation(&x, &y, &calib, trials, seed, svg_dir.as_ref());
    }
    if part("drift") {
        drift(&x, &y, &calib, drift_trials, seed, svg_dir.as_ref());
    }
    // The effects table and the IR-drop error are asked for by name.
    if only.as_deref() == Some("ir") {
        ir_error();
    }
    if only.as_deref() == Some("effects") {
        let trials: usize = arg(&args, "--effect-trials").unwrap_or(5);
        effects(&x, &y, &calib, trials, seed, svg_dir.as_ref());
    }
}

/// The first-order IR-drop model against the nodal solve on random arrays (the measurement
/// `docs/noise.md` states and `sim/src/noise/ir_drop.rs` tests).
fn ir_error() {
    println!("| rows = cols | r·G_max | largest drop / ideal | first-order error / drop |");
    println!("|---:|---:|---:|---:|");
    for rg_max in [2.5e-5, 1e-4] {
        for n in [16usize, 32, 64, 128] {
            let (rel, drop) = cimc_sim::noise::ir_drop::first_order_error(n, rg_max, 3);
            println!("| {n} | {rg_max:e} | {:.2} % | {:.2} % |", 100.0 * drop, 100.0 * rel);
        }
    }
}

/// One row of the effects table: a spec on the programs compiled with `rows` rows per array
/// and `adcs` ADCs per array (`[cost] adcs_per_array`, which decides which columns share an
/// ADC's errors).
struct Effect {
    effect: &'static str,
    setting: String,
    spec: NoiseSpec,
    rows: usize,
    adcs: f64,
}

/// The device parameters of the effects table (`docs/noise.md` cites each).
fn effect_rows() -> Vec<Effect> {
    let d = NoiseSpec::default;
    let e = |effect, setting: &str, spec: NoiseSpec| Effect {
        effect,
        setting: setting.to_string(),
        spec,
        rows: 128,
        adcs: 1.0,
    };
    let all = NoiseSpec::load(&cimc_examples::repo_root().join("targets/noise/all.toml"))
        .expect("targets/noise/all.toml");
    let aihwkit_poly = vec![0.26348, 1.9650, -1.1731];
    let mut v = vec![
        Effect {
            adcs: 128.0,
            ..e(
                "ADC offset",
                "σ 0.25 LSB, one ADC per column",
                NoiseSpec { adc_offset_sigma_lsb: 0.25, ..d() },
            )
        },
        e(
            "ADC offset",
            "σ 0.25 LSB, one ADC per array",
            NoiseSpec { adc_offset_sigma_lsb: 0.25, ..d() },
        ),
        Effect {
            adcs: 128.0,
            ..e(
                "ADC gain",
                "σ 0.5 LSB, one ADC per column",
                NoiseSpec { adc_gain_sigma_lsb: 0.5, ..d() },
            )
        },
        e("ADC gain", "σ 0.5 LSB, one ADC per array", NoiseSpec { adc_gain_sigma_lsb: 0.5, ..d() }),
        e("ADC INL", "DNL σ 0.2 LSB (INL its sum)", NoiseSpec { adc_dnl_sigma_lsb: 0.2, ..d() }),
        e("ADC INL", "DNL σ 0.5 LSB", NoiseSpec { adc_dnl_sigma_lsb: 0.5, ..d() }),
        e("ADC INL", "bow, 1 LSB at mid-scale", NoiseSpec { adc_inl_bow_lsb: 1.0, ..d() }),
        e("ADC INL", "bow, 4 LSB at mid-scale", NoiseSpec { adc_inl_bow_lsb: 4.0, ..d() }),
        e("ADC step", "0.75·2^e (not a power of two)", NoiseSpec { adc_step_scale: 0.75, ..d() }),
        Effect { adcs: 128.0, ..e("all.toml", "one ADC per column", all.clone()) },
        e("all.toml", "one ADC per array", all),
        e("off-state", "on/off 100 (g_min 0.25 µS, PCM)", NoiseSpec { g_min_us: 0.25, ..d() }),
        e("off-state", "on/off 10 (CrossSim's 1 kΩ/10 kΩ)", NoiseSpec { g_min_us: 2.5, ..d() }),
        e(
            "programming",
            "aihwkit PCM σ(g), g_max 25 µS",
            NoiseSpec { prog_poly_us: aihwkit_poly.clone(), ..d() },
        ),
    ];
    for (name, t) in [("1 h", 3600.0), ("1 d", 86400.0), ("1 y", 365.0 * 86400.0)] {
        let drift = NoiseSpec { nu_model: NuModel::Pcm, drift_time_s: t, ..d() };
        v.push(e("drift ν(g)", &format!("{name}, uncompensated"), drift.clone()));
        v.push(e(
            "drift ν(g)",
            &format!("{name}, compensated"),
            NoiseSpec { drift_compensation: true, ..drift },
        ));
    }
    for (name, t) in [("1 h", 3600.0), ("1 d", 86400.0), ("1 y", 365.0 * 86400.0)] {
        let pcm = NoiseSpec {
            prog_poly_us: aihwkit_poly.clone(),
            nu_model: NuModel::Pcm,
            read_1f_scale: 1.0,
            drift_time_s: t,
            drift_compensation: true,
            ..d()
        };
        v.push(e("aihwkit PCM", &format!("σ(g) + ν(g) + 1/f, {name}, compensated"), pcm));
    }
    for rows in IR_ROWS {
        for model in [IrModel::FirstOrder, IrModel::Solve] {
            let name = if model == IrModel::Solve { "solve" } else { "first order" };
            v.push(Effect {
                rows,
                ..e(
                    "IR drop",
                    &format!("{rows} rows, {IR_OHM} Ω/segment, {name}"),
                    NoiseSpec { wire_ohm: IR_OHM, ir_model: model, ..d() },
                )
            });
        }
    }
    v
}

/// Rows per array of the IR-drop rows, and the wire resistance per segment.
const IR_ROWS: [usize; 4] = [64, 128, 256, 512];
const IR_OHM: f64 = 1.0;

/// Each effect alone, on `mnist_cnn` and `mnist_resnet` (ISAAC-like arrays: `isaac` with its
/// rows and ADC sharing set per row), `trials` trials each; a markdown table, and with `svg`
/// a bar plot of the mean top-1 per row and a plot of the IR-drop rows against array rows.
fn effects(x: &Tensor, y: &[i64], calib: &Tensor, trials: usize, seed: u64, svg: Option<&PathBuf>) {
    let rows = effect_rows();
    let models: Vec<String> = std::env::args()
        .skip_while(|a| a != "--models")
        .nth(1)
        .map_or(vec!["mnist_cnn".into(), "mnist_resnet".into()], |m| {
            m.split(',').map(str::to_string).collect()
        });
    // Per model: the exact top-1 at 128 rows and one result per row.
    let mut results: Vec<(f64, Vec<cimc::noise_eval::ScenarioResult>)> = Vec::new();
    for model in &models {
        let mut per_row: Vec<Option<cimc::noise_eval::ScenarioResult>> = vec![None; rows.len()];
        let mut exact = 0.0;
        // One program per (rows, ADCs per array), its rows run together.
        let mut layouts: Vec<(usize, u64)> =
            rows.iter().map(|r| (r.rows, r.adcs.to_bits())).collect();
        layouts.sort_unstable();
        layouts.dedup();
        for (nrows, adcs) in layouts {
            let mut t = cimc_examples::isaac_differential();
            t.chip.crossbar.rows = nrows;
            t.cost.adcs_per_array = f64::from_bits(adcs);
            let p = compile_model(model, &t, calib);
            let r = ProgramRunner::new(&p).unwrap();
            let idx: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].rows == nrows && rows[i].adcs.to_bits() == adcs)
                .collect();
            let sc: Vec<Scenario> = idx
                .iter()
                .map(|&i| Scenario {
                    label: rows[i].setting.clone(),
                    spec: rows[i].spec.clone(),
                    x: i as f64,
                })
                .collect();
            let mc = monte_carlo(&r, BATCH, x, y, &sc, trials, seed, &|_| {}).expect("run");
            if nrows == 128 {
                exact = mc.exact_top1;
            }
            eprintln!(
                "{model}: {nrows} rows, {} ADCs/array: exact {:.2} %",
                f64::from_bits(adcs),
                mc.exact_top1
            );
            for (i, res) in idx.into_iter().zip(mc.scenarios) {
                // Each row as it comes (a long run keeps what it made).
                eprintln!(
                    "| {model} | {} | {} | {:.2} ({:.2}) | {:.2}–{:.2} |",
                    rows[i].effect, rows[i].setting, res.mean, res.std, res.min, res.max
                );
                per_row[i] = Some(res);
            }
        }
        results.push((exact, per_row.into_iter().map(|r| r.expect("every row ran")).collect()));
    }
    let n = y.len();
    println!(
        "### Each effect alone: `isaac` (128×128 arrays of 2-bit cells, 8-bit ADCs, W8A8), {trials} \
         trials, first {n} MNIST test images, seed {seed}\n"
    );
    let mut head = "| effect | setting |".to_string();
    let mut rule = "|---|---|".to_string();
    let mut exact = "| none | exact program |".to_string();
    for (m, (e, _)) in models.iter().zip(&results) {
        head += &format!(" {m} mean % (std) | min–max % |");
        rule += "---:|---:|";
        exact += &format!(" {e:.2} | – |");
    }
    println!("{head}\n{rule}\n{exact}");
    for (i, r) in rows.iter().enumerate() {
        let mut line = format!("| {} | {} |", r.effect, r.setting);
        for (_, res) in &results {
            let a = &res[i];
            line += &format!(" {:.2} ({:.2}) | {:.2}–{:.2} |", a.mean, a.std, a.min, a.max);
        }
        println!("{line}");
    }
    if let Some(dir) = svg {
        std::fs::create_dir_all(dir).expect("svg dir");
        let labels: Vec<String> =
            rows.iter().map(|r| format!("{}: {}", r.effect, r.setting)).collect();
        let means: Vec<Vec<f64>> =
            results.iter().map(|(_, v)| v.iter().map(|s| s.mean).collect()).collect();
        let series: Vec<(&str, &[f64])> =
            models.iter().zip(&means).map(|(m, v)| (m.as_str(), v.as_slice())).collect();
        let b =
            cimc::svg::bars("Each device effect alone on isaac: mean top-1 (%)", &labels, &series);
        std::fs::write(dir.join("noise-effects.svg"), b).expect("write svg");
        let xs: Vec<f64> = IR_ROWS.iter().map(|&r| (r as f64).log2()).collect();
        let mut lines = Vec::new();
        for (m, (_, res)) in models.iter().zip(&results) {
            for (what, tag) in [("first order", "first order"), ("solve", "solve")] {
                let ys: Vec<Option<f64>> = IR_ROWS
                    .iter()
                    .map(|&nr| {
                        rows.iter()
                            .position(|r| {
                                r.effect == "IR drop" && r.rows == nr && r.setting.ends_with(tag)
                            })
                            .map(|i| res[i].mean)
                    })
                    .collect();
                lines.push((format!("{m}, {what}"), ys));
            }
        }
        let lo = lines.iter().flat_map(|(_, v)| v.iter().flatten().copied()).fold(100.0, f64::min);
        let d = cimc::svg::lines(
            &format!("IR drop ({IR_OHM} Ω per segment): mean top-1 vs rows per array"),
            "log2(rows per array)",
            "top-1 (%)",
            &xs,
            &lines,
            ((((lo - 1.0) / 5.0).floor() * 5.0).max(0.0), 100.0),
        );
        std::fs::write(dir.join("noise-ir-drop.svg"), d).expect("write svg");
    }
}

fn variation(
    x: &Tensor,
    y: &[i64],
    calib: &Tensor,
    trials: usize,
    seed: u64,
    svg: Option<&PathBuf>,
) {
    let n = y.len();
    let progress = |_: usize| {};

    // Programming variation on the ISAAC-like preset.
    let isaac = cimc_examples::isaac_differential();
    let p = compile(&isaac, calib);
    let r = ProgramRunner::new(&p).unwrap();
    let rows: Vec<Scenario> = SIGMAS
        .iter()
        .map(|&s| Scenario {
            label: format!("σ_p = {s}"),
            spec: NoiseSpec { sigma_prog: s, ..NoiseSpec::default() },
            x: s,
        })
        .collect();
    let mc = monte_carlo(&r, BATCH, x, y, &rows, trials, seed, &progress).expect("run");
    println!(
        "### mnist_cnn on `isaac`, programming variation: {trials} trials, first {n} MNIST test \
         images, seed {seed}\n"
    );
    print!("{}", table(&mc, "σ_p"));
    for sc in &mc.scenarios {
        println!(
            "\n{}: a noisy trial costs {:.2}x one exact run",
            sc.label,
            sc.seconds_per_trial / mc.exact_seconds
        );
    }
    // Read noise alone: a normal per conversion.
    let rows: Vec<Scenario> = READ_SIGMAS
        .iter()
        .map(|&s| Scenario {
            label: format!("σ_r = {s}"),
            spec: NoiseSpec { sigma_read: s, ..NoiseSpec::default() },
            x: s,
        })
        .collect();
    let rd = monte_carlo(&r, BATCH, x, y, &rows, trials, seed, &progress).expect("run");
    println!(
        "\n### mnist_cnn on `isaac`, read noise: {trials} trials, first {n} MNIST test images, \
         seed {seed}\n"
    );
    print!("{}", table(&rd, "σ_r"));
    for sc in &rd.scenarios {
        println!(
            "\n{}: a noisy trial costs {:.2}x one exact run",
            sc.label,
            sc.seconds_per_trial / rd.exact_seconds
        );
    }
    let sp = |s: f64| NoiseSpec { sigma_prog: s, ..NoiseSpec::default() };
    let sr = |s: f64| NoiseSpec { sigma_read: s, ..NoiseSpec::default() };
    cpu_costs(
        &r,
        x,
        y,
        &[("σ_p = 0.2", sp(0.2)), ("σ_r = 0.1", sr(0.1)), ("σ_r = 0.5", sr(0.5))],
        4,
    );
    if let Some(dir) = svg {
        std::fs::create_dir_all(dir).expect("svg dir");
        let v = mc.svg("mnist_cnn on isaac: top-1 vs programming variation", "σ_p");
        std::fs::write(dir.join("noise-variation.svg"), v).expect("write svg");
    }
}

fn drift(
    x: &Tensor,
    y: &[i64],
    calib: &Tensor,
    drift_trials: usize,
    seed: u64,
    svg: Option<&PathBuf>,
) {
    let n = y.len();
    let progress = |_: usize| {};
    // Drift on the PCM-like target, with its whole [noise] table.
    let pcm_path = cimc_examples::repo_root().join("targets/pcm.toml");
    let pcm = Target::load(&pcm_path).expect("targets/pcm.toml");
    let pp = compile(&pcm, calib);
    let pr = ProgramRunner::new(&pp).unwrap();
    let mut drift = Vec::new();
    for comp in [false, true] {
        let rows: Vec<Scenario> = TIMES
            .iter()
            .map(|&(name, t)| Scenario {
                label: format!("{name}{}", if comp { ", compensated" } else { "" }),
                spec: NoiseSpec { drift_time_s: t, drift_compensation: comp, ..pcm.noise.clone() },
                x: t.log10(),
            })
            .collect();
        drift.push(
            monte_carlo(&pr, BATCH, x, y, &rows, drift_trials, seed, &progress).expect("run"),
        );
    }
    println!(
        "\n### mnist_cnn on `targets/pcm.toml` (its [noise] table: σ_p {}, σ_r {}, ν ~ N({}, \
         {}), t0 = {} s), drift: {drift_trials} trials, first {n} images\n",
        pcm.noise.sigma_prog,
        pcm.noise.sigma_read,
        pcm.noise.nu_mean,
        pcm.noise.nu_std,
        pcm.noise.t0_s
    );
    println!("| time after programming | mean top-1 % (std) | min–max % | compensated: mean % (std) | min–max % |");
    println!("|---|---:|---:|---:|---:|");
    println!("| exact | {:.2} | – | {:.2} | – |", drift[0].exact_top1, drift[1].exact_top1);
    for (a, b) in drift[0].scenarios.iter().zip(&drift[1].scenarios) {
        println!(
            "| {} | {:.2} ({:.2}) | {:.2}–{:.2} | {:.2} ({:.2}) | {:.2}–{:.2} |",
            TIMES.iter().find(|t| a.label.starts_with(t.0)).map_or("", |t| t.0),
            a.mean,
            a.std,
            a.min,
            a.max,
            b.mean,
            b.std,
            b.min,
            b.max
        );
    }
    println!(
        "\nexact run {:.2} s; a noisy trial {:.2} s (PCM, 1 d)",
        drift[0].exact_seconds, drift[0].scenarios[2].seconds_per_trial
    );
    if let Some(dir) = svg {
        std::fs::create_dir_all(dir).expect("svg dir");
        let xs: Vec<f64> = TIMES.iter().map(|t| t.1.log10()).collect();
        let series = vec![
            (
                "no compensation".to_string(),
                drift[0].scenarios.iter().map(|s| Some(s.mean)).collect(),
            ),
            (
                "global drift compensation".to_string(),
                drift[1].scenarios.iter().map(|s| Some(s.mean)).collect(),
            ),
            ("exact".to_string(), vec![Some(drift[0].exact_top1); xs.len()]),
        ];
        let lo =
            drift.iter().flat_map(|d| d.scenarios.iter().map(|s| s.mean)).fold(100.0, f64::min);
        let d = cimc::svg::lines(
            "mnist_cnn on a PCM-like target: mean top-1 vs time after programming",
            "log10(time after programming / s)",
            "top-1 (%)",
            &xs,
            &series,
            ((((lo - 1.0) / 5.0).floor() * 5.0).max(0.0), 100.0),
        );
        std::fs::write(dir.join("noise-drift.svg"), d).expect("write svg");
    }
}
