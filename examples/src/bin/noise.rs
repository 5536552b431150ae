//! Accuracy under analog non-idealities (`docs/hardware-model.md` §5, `docs/noise.md`): Monte Carlo
//! top-1 of `mnist_cnn` (W8A8) on the ISAAC-like preset at three levels of programming variation
//! and two of read noise, the time per noisy trial next to one exact run, and the drift table of a
//! PCM-like target (`targets/pcm.toml`, its whole `[noise]` table) at 1 s, 1 h, 1 d and 1 y after
//! programming, without and with global drift compensation.
//!
//! `cargo run --release -p cimc-examples --bin noise -- [--limit N] [--trials N]
//!  [--drift-trials N] [--seed S] [--svg DIR] [--only variation|drift]`
//!
//! Prints markdown tables (kept in `docs/noise.md`) and, with `--svg DIR`, writes
//! `noise-variation.svg` and `noise-drift.svg` there.

use cimc::noise_eval::{monte_carlo, McReport, Scenario};
use cimc_backends::noise::NoiseSpec;
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
    let g = cimc_examples::import_vendored("mnist_cnn", BATCH);
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
    let isaac = Target::preset("isaac").expect("preset");
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
