//! Tests of the device models against their formulas (aihwkit's PCM fits, the off-state, the
//! ADC transfer curves, the non-power-of-two step, IR drop in a programmed step), the
//! validation of their keys, and that each of them leaves noise "on" (never the exact path).

use super::rng::{Key, Stream};
use super::run::chunk;
use super::sample::{adc_thresholds, pcm_nu, pcm_q_s, prog_sigma_us, sample_step};
use super::{NoiseConfig, NoiseSpec};
use crate::program::crossbar::{PreparedCrossbar, Source};
use cimc_backends::noise::{IrModel, NuModel};

use super::tests::small;

fn spec(f: impl FnOnce(&mut NoiseSpec)) -> NoiseSpec {
    let mut s = NoiseSpec::default();
    f(&mut s);
    s
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// The conductances (levels) of the w⁺ cells (`negative = false`) or the w⁻ cells of a step
/// with `k` rows and `m` outputs, in trial 0.
fn cells(p: &PreparedCrossbar, s: &NoiseSpec, negative: bool) -> Vec<f64> {
    let nx = sample_step(p, &NoiseConfig::new(s.clone(), 3), 0, 0, 1.0);
    let mut v = Vec::new();
    for r in 0..p.k {
        for n in 0..p.mg {
            v.push(nx.g[nx.index(p.pc_pad, 0, r, 2 * n + negative as usize)] as f64);
        }
    }
    v
}

#[test]
fn aihwkit_formulas_at_known_points() {
    // μ_ν(1) = 0.0244 → 0.049 (clamped), σ_ν(1) = −0.0059 → 0.008.
    assert!((pcm_nu(1.0, 0.0) - 0.049).abs() < 1e-12);
    assert!((pcm_nu(1.0, 1.0) - 0.057).abs() < 1e-12);
    // g_rel = 0.1: μ = 0.0155·ln 10 + 0.0244, σ = 0.0125·ln 10 − 0.0059.
    let l10 = 10f64.ln();
    assert!((pcm_nu(0.1, 0.0) - (0.0155 * l10 + 0.0244)).abs() < 1e-12);
    assert!((pcm_nu(0.1, 1.0) - (0.0155 * l10 + 0.0244 + 0.0125 * l10 - 0.0059)).abs() < 1e-12);
    // ν is |μ + σ·ε|.
    assert!((pcm_nu(1.0, -10.0) - (0.08 - 0.049)).abs() < 1e-12);
    // Q_s = 0.0088/g_rel^0.65, at most 0.2.
    assert!((pcm_q_s(1.0) - 0.0088).abs() < 1e-12);
    assert!((pcm_q_s(0.01) - 0.0088 / 0.01f64.powf(0.65)).abs() < 1e-12);
    assert_eq!(pcm_q_s(1e-4), 0.2);
    // σ_prog(g_T) = (g_max/25)·(c0 + c1·x + c2·x²): aihwkit's fit at x = 0, 1/2, 1.
    let s = spec(|s| s.prog_poly_us = vec![0.26348, 1.9650, -1.1731]);
    assert!((prog_sigma_us(&s, 0.0) - 0.26348).abs() < 1e-12);
    assert!((prog_sigma_us(&s, 12.5) - (0.26348 + 0.9825 - 1.1731 / 4.0)).abs() < 1e-12);
    assert!((prog_sigma_us(&s, 25.0) - (0.26348 + 1.9650 - 1.1731)).abs() < 1e-12);
    let s50 = spec(|s| {
        s.prog_poly_us = vec![0.26348, 1.9650, -1.1731];
        s.g_max_us = 50.0;
    });
    assert!((prog_sigma_us(&s50, 50.0) - 2.0 * (0.26348 + 1.9650 - 1.1731)).abs() < 1e-12);
}

#[test]
fn programming_noise_follows_the_polynomial() {
    // Every w⁺ cell at level 8 (g_T = 8/15 of 25 µS), the w⁻ cells at 0; 128 × 64 = 8192 each.
    let p = small(128, 64, |_, _| 8);
    let s = spec(|s| s.prog_poly_us = vec![0.26348, 1.9650, -1.1731]);
    let level_us = 25.0 / 15.0;
    let want = prog_sigma_us(&s, 8.0 * level_us) / level_us;
    let (mean, sd) = mean_std(&cells(&p, &s, false));
    assert!((mean - 8.0).abs() < 4.0 * want / 8192f64.sqrt(), "mean {mean}");
    assert!((sd / want - 1.0).abs() < 0.05, "σ {sd} levels, {want} expected");
    // Level 0: σ(0) = c0 = 0.26 µS, clamped at 0: mean σ0/sqrt(2π) (aihwkit clamps too).
    let s0 = prog_sigma_us(&s, 0.0) / level_us;
    let (mean0, _) = mean_std(&cells(&p, &s, true));
    let want0 = s0 / (2.0 * std::f64::consts::PI).sqrt();
    assert!((mean0 / want0 - 1.0).abs() < 0.05, "level-0 mean {mean0}, {want0} expected");
}

#[test]
fn off_state_conducts_and_cancels_in_the_differential_pair() {
    // g_min = g_max/31 with 4-bit cells: one level is (25 − 25/31)/15 = 50/31 µS, the off-state
    // exactly half a level.
    let (k, m) = (100, 4);
    let p = small(k, m, |r, n| ((r + n) % 15) as i32 + 1);
    let s = spec(|s| s.g_min_us = 25.0 / 31.0);
    assert!(!s.is_off());
    let plus = cells(&p, &s, false);
    let minus = cells(&p, &s, true);
    for r in 0..k {
        for n in 0..m {
            let u = ((r + n) % 15) as f64 + 1.0;
            assert!((plus[r * m + n] - (u + 0.5)).abs() < 1e-5);
            assert!((minus[r * m + n] - 0.5).abs() < 1e-6);
        }
    }
    // Every row driven: each column gets 100 × 0.5 more, the same on w⁺ and w⁻, so the
    // lossless ADC's difference is the exact product.
    let nx = sample_step(&p, &NoiseConfig::new(s, 3), 0, 0, 1.0);
    let x = vec![1i32; k];
    let acc = chunk(&p, &nx, &Source::Gemm { x: &x }, 0, 1, 0, 1, &|a, _| a).unwrap();
    let exact: Vec<i64> = (0..m).map(|n| (0..k).map(|r| ((r + n) % 15) as i64 + 1).sum()).collect();
    assert_eq!(acc, exact);
}

#[test]
fn conductance_dependent_drift_and_1f_noise() {
    let (k, m) = (128, 64);
    let p = small(k, m, |_, _| 15);
    let (t0, t) = (20.0, 86400.0);
    let s = spec(|s| {
        s.nu_model = NuModel::Pcm;
        s.t0_s = t0;
        s.drift_time_s = t;
    });
    assert!(s.drifts() && !s.is_off());
    // Top level: g_rel = 1, ν ~ |N(0.049, 0.008)|: E[(t/t0)^(−ν)] as for a normal ν.
    let l = (t / t0).ln();
    let expect = (-0.049 * l + 0.008f64.powi(2) * l * l / 2.0).exp();
    let (mean, _) = mean_std(&cells(&p, &s, false));
    assert!((mean / 15.0 / expect - 1.0).abs() < 0.01, "mean drift {}", mean / 15.0);
    // 1/f noise alone at t: relative σ = Q_s(1)·sqrt(ln((t + t_read)/(2 t_read))).
    let s1 = spec(|s| {
        s.read_1f_scale = 1.0;
        s.drift_time_s = t;
    });
    let want = 0.0088 * ((t + 250e-9) / 500e-9).ln().sqrt();
    let (mean1, sd1) = mean_std(&cells(&p, &s1, false));
    assert!((mean1 / 15.0 - 1.0).abs() < 4.0 * want / 8192f64.sqrt());
    assert!((sd1 / 15.0 / want - 1.0).abs() < 0.05, "1/f σ {} vs {want}", sd1 / 15.0);
    // It grows with time: at t0 (and before) σ is that of t = t0.
    let s_early = spec(|s| s.read_1f_scale = 1.0);
    let (_, sd0) = mean_std(&cells(&p, &s_early, false));
    let want0 = 0.0088 * ((t0 + 250e-9) / 500e-9).ln().sqrt();
    assert!((sd0 / 15.0 / want0 - 1.0).abs() < 0.05 && sd0 < sd1);
}

#[test]
fn adc_thresholds_are_end_point_corrected_and_monotone() {
    let key = Key::new(1, 2, Stream::AdcDnl, 3);
    let ideal = adc_thresholds(&NoiseSpec::default(), 255, key);
    assert_eq!(ideal.len(), 257);
    assert!(ideal[1..=255].iter().enumerate().all(|(k, &t)| t == (k + 1) as f32));
    assert_eq!((ideal[0], ideal[256]), (f32::NEG_INFINITY, f32::INFINITY));
    let dnl = adc_thresholds(&spec(|s| s.adc_dnl_sigma_lsb = 0.5), 255, key);
    assert!((dnl[1] - 1.0).abs() < 1e-4 && (dnl[255] - 255.0).abs() < 1e-3, "end points");
    assert!(dnl.windows(2).all(|w| w[0] <= w[1]), "monotone");
    assert!(dnl[1..=255].iter().enumerate().any(|(k, &t)| (t - (k + 1) as f32).abs() > 1.0));
    let bow = adc_thresholds(&spec(|s| s.adc_inl_bow_lsb = 2.0), 255, key);
    assert!((bow[128] - 128.0 - 2.0 * 4.0 * (128.0 / 255.0) * (127.0 / 255.0)).abs() < 1e-4);
    assert!((bow[255] - 255.0).abs() < 1e-4);
}

#[test]
fn ideal_transfer_curves_and_half_steps_keep_the_exact_arithmetic() {
    let (k, m) = (200, 8);
    let p = small(k, m, |r, n| ((r * 5 + n * 3) % 31) as i32 - 15);
    let nvec = 20;
    let x: Vec<i32> = (0..nvec * k).map(|i| ((i * 7) % 3 == 0) as i32).collect();
    let run = |s: NoiseSpec| {
        let nx = sample_step(&p, &NoiseConfig::new(s, 1), 0, 0, 1.0);
        chunk(&p, &nx, &Source::Gemm { x: &x }, 0, nvec, 0, 1, &|a, _| a).unwrap()
    };
    let exact = run(NoiseSpec::default());
    // A DNL below f32's resolution: the scalar transfer-curve path, the exact codes.
    assert_eq!(run(spec(|s| s.adc_dnl_sigma_lsb = 1e-9)), exact);
    // A step of half 2^e (= 1) on a lossless ADC: codes 2P, times 1/2: exact again.
    assert_eq!(run(spec(|s| s.adc_step_scale = 0.5)), exact);
    // A step of 3/4 is not exact: each conversion is within 3/8 of its partial sum, and an
    // accumulator sums 4 (two row tiles, w⁺ and w⁻), rounded: at most 2 off.
    let three_quarters = run(spec(|s| s.adc_step_scale = 0.75));
    assert_ne!(three_quarters, exact);
    assert!(three_quarters.iter().zip(&exact).all(|(a, b)| (a - b).abs() <= 2));
    // A DNL of half an LSB moves codes.
    assert_ne!(run(spec(|s| s.adc_dnl_sigma_lsb = 0.5)), exact);
}

#[test]
fn ir_drop_attenuates_cells_far_from_the_driver_and_the_amplifier() {
    // Every w⁺ cell at the top level, 128 rows: the farther a cell from the word line's
    // driver (column 0) and from the bit line's amplifier (the last row), the lower.
    let (k, m) = (128, 64);
    let p = small(k, m, |_, _| 15);
    for model in [IrModel::FirstOrder, IrModel::Solve] {
        let s = spec(|s| {
            s.wire_ohm = 2.0;
            s.ir_model = model;
        });
        assert!(!s.is_off());
        let g = cells(&p, &s, false);
        assert!(g.iter().all(|&v| v < 15.0 && v > 0.0), "{model:?}");
        // Row 0 (farthest from the amplifier) below the last row; column 0 above the last.
        assert!(g[0] < g[(k - 1) * m], "{model:?}: bit-line drop");
        assert!(g[(k - 1) * m] > g[(k - 1) * m + m - 1], "{model:?}: word-line drop");
    }
    // With small drops the two models agree to a fraction of the drop about the drop's own
    // size (second order): r·G_max = 0.25 Ω · 25 µS, 128 rows.
    let fo = cells(&p, &spec(|s| s.wire_ohm = 0.25), false);
    let so = cells(&p, &spec(|s| (s.wire_ohm, s.ir_model) = (0.25, IrModel::Solve)), false);
    let drop = so.iter().map(|&b| 1.0 - b / 15.0).fold(0.0, f64::max);
    let worst = fo.iter().zip(&so).map(|(a, b)| (a - b).abs() / (15.0 - b)).fold(0.0, f64::max);
    assert!(drop > 0.01 && worst < 2.0 * drop, "first order vs solve: {worst} of the drop {drop}");
}

#[test]
fn every_new_key_turns_noise_on_and_is_validated() {
    assert!(NoiseSpec::default().is_off());
    let on: [fn(&mut NoiseSpec); 8] = [
        |s| s.g_min_us = 1.0,
        |s| s.prog_poly_us = vec![0.1],
        |s| s.read_1f_scale = 1.0,
        |s| s.adc_dnl_sigma_lsb = 0.1,
        |s| s.adc_inl_bow_lsb = -1.0,
        |s| s.adc_step_scale = 0.75,
        |s| s.wire_ohm = 1.0,
        |s| (s.nu_model, s.drift_time_s) = (NuModel::Pcm, 100.0),
    ];
    for f in on {
        let s = spec(f);
        assert!(!s.is_off(), "{s:?}");
        s.validate("t").unwrap();
    }
    // Before t0 the PCM drift changes nothing; zero coefficients are no polynomial.
    assert!(spec(|s| s.nu_model = NuModel::Pcm).is_off());
    assert!(spec(|s| s.prog_poly_us = vec![0.0, 0.0]).is_off());
    let bad = |text: &str, want: &str| {
        let e = NoiseSpec::from_toml_str(&format!("[noise]\n{text}\n"), "f.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("f.toml") && msg.contains(want), "{text}: {msg}");
    };
    bad("g_min_us = 30.0", "noise.g_min_us = 30: expected a number below noise.g_max_us = 25");
    bad("g_max_us = 0.0", "noise.g_max_us = 0: expected a number > 0");
    bad("prog_poly_us = [1, 2, 3, 4, 5, 6, 7, 8, 9]", "noise.prog_poly_us has 9 coefficients");
    bad("prog_poly_us = [1e9]", "noise.prog_poly_us[0] = 1000000000: expected a number in");
    bad("read_1f_scale = -1.0", "noise.read_1f_scale = -1: expected a number >= 0");
    bad("t_read_s = 0.0", "noise.t_read_s = 0: expected a number > 0");
    bad("adc_dnl_sigma_lsb = 5.0", "noise.adc_dnl_sigma_lsb = 5");
    bad("adc_inl_bow_lsb = 100.0", "noise.adc_inl_bow_lsb = 100");
    bad("adc_step_scale = 0.4", "noise.adc_step_scale = 0.4: expected a number >= 0.5 and <= 1");
    bad("wire_ohm = -1.0", "noise.wire_ohm = -1");
    bad("ir_row_activity = 0.0", "noise.ir_row_activity = 0: expected a number > 0");
    bad("nu_model = \"gaussian\"", "nu_model");
    bad("ir_model = \"spice\"", "ir_model");
    // The shipped device files load.
    for f in ["pcm_aihwkit", "reram_crosssim", "adc", "ir_drop"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../targets/noise/{f}.toml"));
        let s = NoiseSpec::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!s.is_off(), "{f}");
    }
}
