//! Statistical tests of the noise model against its formulas, on small crossbars built here:
//! the empirical mean and variance of the noisy accumulators over many trials (programming
//! variation) or many conversions (read noise), stuck-at fractions, drift and its compensation,
//! and the noiseless limit.

use super::rng::Key;
use super::run::chunk;
use super::sample::sample_step;
use super::{CellPattern, NoiseConfig, NoiseSpec};
use crate::program::crossbar::{prepare_matrix, MatrixSpec, PreparedCrossbar, Source};
use cimc_backends::program::Crossbar;
use cimc_ir::{CrossbarGeometry, WeightEncoding};
use std::sync::Arc;

/// A crossbar of one input slice and one weight slice whose ADC is lossless: `rows` rows of
/// 1-bit inputs, 4-bit cells, 5-bit differential weights (4 magnitude bits), a 12-bit ADC.
pub(super) fn small(
    k: usize,
    m: usize,
    w: impl Fn(usize, usize) -> i32 + Sync,
) -> PreparedCrossbar {
    one_slice(WeightEncoding::Differential, 5, k, m, w)
}

/// A one-slice crossbar with `encoding` and `weight_bits` (4 magnitude bits either way): 4-bit
/// cells, 1-bit inputs, a lossless 12-bit ADC.
fn one_slice(
    encoding: WeightEncoding,
    weight_bits: u32,
    k: usize,
    m: usize,
    w: impl Fn(usize, usize) -> i32 + Sync,
) -> PreparedCrossbar {
    let x = Crossbar {
        geometry: CrossbarGeometry {
            encoding,
            rows: 128,
            cols: 128,
            cell_bits: 4,
            dac_bits: 1,
            adc_bits: 12,
        },
        weight_bits,
        magnitude_bits: 4,
        input_bits: 1,
        input_min: 0,
        adc_step: vec![0],
        arrays: vec![],
    };
    prepare_matrix(&MatrixSpec { x: &x, k, m, groups: 1, w_at: w, input_zero: 0, bias: &[] })
        .unwrap()
}

/// The accumulators `[vector][output]` of `x` (`[nvec, k]` inputs) in trial `trial`.
fn accs(p: &PreparedCrossbar, cfg: &NoiseConfig, trial: u64, x: &[i32]) -> Vec<i64> {
    let nx = sample_step(p, cfg, trial, 0, 1.0);
    let nvec = x.len() / p.k;
    chunk(p, &nx, &Source::Gemm { x }, 0, nvec, 0, 1, &|a, _| a).unwrap()
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0))
}

fn spec(f: impl FnOnce(&mut NoiseSpec)) -> NoiseSpec {
    let mut s = NoiseSpec::default();
    f(&mut s);
    s
}

/// Weights 1..=15 over the rows (all positive: the w⁻ cells are 0 and stay 0).
fn ramp(k: usize, _n: usize) -> i32 {
    (k % 15) as i32 + 1
}

#[test]
fn programming_variation_matches_the_formula() {
    let k = 100;
    let p = small(k, 1, ramp);
    let x = vec![1i32; k];
    let sigma = 0.1;
    let cfg = NoiseConfig::new(spec(|s| s.sigma_prog = sigma), 7);
    let exact: f64 = (0..k).map(|r| ramp(r, 0) as f64).sum();
    let var: f64 = (0..k).map(|r| (sigma * ramp(r, 0) as f64).powi(2)).sum::<f64>() + 1.0 / 12.0;
    let trials = 3000;
    let v: Vec<f64> = (0..trials).map(|t| accs(&p, &cfg, t, &x)[0] as f64).collect();
    let (m, s2) = mean_var(&v);
    // The mean within 4 standard errors, the variance within 10 %.
    assert!((m - exact).abs() < 4.0 * (var / trials as f64).sqrt(), "mean {m} vs {exact}");
    assert!((s2 / var - 1.0).abs() < 0.1, "variance {s2} vs {var}");
}

#[test]
fn read_noise_variance_is_sigma_squared_times_p() {
    let k = 100;
    let p = small(k, 1, ramp);
    let nvec = 4000;
    let x = vec![1i32; k * nvec];
    let sr = 0.5;
    let cfg = NoiseConfig::new(spec(|s| s.sigma_read = sr), 3);
    let exact: f64 = (0..k).map(|r| ramp(r, 0) as f64).sum();
    // Every vector is a new conversion with its own draw; the w⁻ column has P = 0: no noise.
    let v: Vec<f64> = accs(&p, &cfg, 0, &x).iter().map(|&a| a as f64).collect();
    let (m, s2) = mean_var(&v);
    let var = sr * sr * exact + 1.0 / 12.0;
    assert!((m - exact).abs() < 4.0 * (var / nvec as f64).sqrt(), "mean {m} vs {exact}");
    assert!((s2 / var - 1.0).abs() < 0.1, "variance {s2} vs {var}");
}

#[test]
fn stuck_at_fractions_match() {
    // 128 rows x 64 outputs x 2 columns = 16384 cells, levels 1..15 and 0 (the w⁻ cells).
    let (k, m) = (128, 64);
    let p = small(k, m, |r, n| ((r + n) % 15) as i32 + 1);
    let (off, on) = (0.05, 0.02);
    let cfg = NoiseConfig::new(
        spec(|s| {
            s.p_stuck_off = off;
            s.p_stuck_on = on;
        }),
        11,
    );
    let nx = sample_step(&p, &cfg, 0, 0, 1.0);
    let (mut zero, mut top, mut cells) = (0usize, 0usize, 0usize);
    for r in 0..k {
        for c in 0..p.pc {
            let want = if c % 2 == 0 { ((r + c / 2) % 15) as f32 + 1.0 } else { 0.0 };
            let got = nx.g[nx.index(p.pc_pad, 0, r, c)];
            cells += 1;
            if got != want {
                if got == 0.0 {
                    zero += 1;
                } else {
                    assert_eq!(got, 15.0, "a changed cell is stuck at 0 or 15");
                    top += 1;
                }
            }
        }
    }
    // Stuck cells that already held their stuck level do not show: correct the expectation.
    let holds_top = (0..k).flat_map(|r| (0..m).map(move |n| (r + n) % 15 == 14)).filter(|&b| b);
    let n_top_level = holds_top.count() as f64;
    let n = cells as f64;
    let exp_zero = off * (n / 2.0);
    let exp_top = on * (n - n_top_level);
    for (got, exp, pr) in [(zero as f64, exp_zero, off), (top as f64, exp_top, on)] {
        let sd = (n * pr * (1.0 - pr)).sqrt();
        assert!((got - exp).abs() < 4.0 * sd, "{got} stuck cells, {exp} expected");
    }
}

#[test]
fn drift_mean_and_compensation() {
    let (k, m) = (128, 64);
    let p = small(k, m, |r, n| ((r + n) % 15) as i32 + 1);
    let (mu, sd, t0, t) = (0.05, 0.02, 20.0, 86400.0);
    let s = spec(|s| {
        s.nu_mean = mu;
        s.nu_std = sd;
        s.t0_s = t0;
        s.drift_time_s = t;
    });
    let nx = sample_step(&p, &NoiseConfig::new(s.clone(), 5), 0, 0, 1.0);
    let l = (t / t0).ln();
    // E[(t/t0)^(−ν)] for ν ~ N(μ, σ²) (the clamp at 0 is 2.5 σ away: negligible).
    let expect = (-mu * l + sd * sd * l * l / 2.0).exp();
    let mut ratios = Vec::new();
    for r in 0..k {
        for nl in 0..m {
            let c = nl * 2;
            ratios.push(nx.g[nx.index(p.pc_pad, 0, r, c)] as f64 / (((r + nl) % 15) as f64 + 1.0));
        }
    }
    let (mean, _) = mean_var(&ratios);
    assert!((mean / expect - 1.0).abs() < 0.01, "mean drift {mean} vs {expect}");
    assert_eq!(nx.compensation(), 1.0, "no compensation unless asked");
    let mut sc = s;
    sc.drift_compensation = true;
    let nc = sample_step(&p, &NoiseConfig::new(sc, 5), 0, 0, 1.0);
    // The calibrated factor undoes the layer's mean drift.
    assert!((nc.compensation() * mean - 1.0).abs() < 0.01, "factor {}", nc.compensation());
    // Before t0 nothing drifts.
    let early = spec(|s| {
        s.nu_mean = mu;
        s.drift_time_s = 1.0;
    });
    assert!(early.is_off());
}

#[test]
fn noiseless_limit_and_seeds() {
    let (k, m) = (300, 20);
    let x_of = |v: usize, r: usize| ((v * 7 + r * 3) % 2) as i32;
    let p = small(k, m, |r, n| ((r * 5 + n * 3) % 31) as i32 - 15);
    let nvec = 50;
    let x: Vec<i32> = (0..nvec).flat_map(|v| (0..k).map(move |r| x_of(v, r))).collect();
    let exact: Vec<i64> = (0..nvec)
        .flat_map(|v| {
            (0..m).map(move |n| {
                (0..k).map(|r| x_of(v, r) as i64 * (((r * 5 + n * 3) % 31) as i64 - 15)).sum()
            })
        })
        .collect();
    // A σ below f32's resolution leaves every level integral: the exact result.
    let tiny = NoiseConfig::new(spec(|s| s.sigma_prog = 1e-9), 1);
    assert_eq!(accs(&p, &tiny, 0, &x), exact);
    assert_eq!(accs(&p, &NoiseConfig::default(), 0, &x), exact);
    let noisy = |seed| NoiseConfig::new(spec(|s| s.sigma_prog = 0.2), seed);
    assert_eq!(accs(&p, &noisy(1), 0, &x), accs(&p, &noisy(1), 0, &x));
    assert_ne!(accs(&p, &noisy(1), 0, &x), accs(&p, &noisy(2), 0, &x));
    assert_ne!(accs(&p, &noisy(1), 0, &x), accs(&p, &noisy(1), 1, &x), "trials differ");
}

/// A pattern that gives ε = +1 to the cells of output 0 and 0 elsewhere.
struct Output0;

impl CellPattern for Output0 {
    fn epsilon(&self, step: usize, _k: usize, n: usize, negative: bool, slice: u32) -> f32 {
        assert_eq!((step, slice), (0, 0));
        if n == 0 && !negative {
            1.0
        } else {
            0.0
        }
    }
}

#[test]
fn cell_pattern_replaces_the_draws() {
    let k = 10;
    let p = small(k, 2, |r, _| r as i32 + 1);
    let cfg = NoiseConfig::new(spec(|s| s.sigma_prog = 0.5), 1).with_pattern(Arc::new(Output0));
    let x = vec![1i32; k];
    let sum: i64 = (1..=k as i64).sum();
    // Output 0: every cell at 1.5 times its level; output 1 untouched.
    assert_eq!(accs(&p, &cfg, 0, &x), vec![(1.5 * sum as f64).round() as i64, sum]);
}

#[test]
fn adc_errors_are_drawn_per_adc() {
    let p = small(128, 64, ramp);
    let cfg = NoiseConfig::new(
        spec(|s| {
            s.adc_gain_sigma_lsb = 2.0;
            s.adc_offset_sigma_lsb = 0.5;
        }),
        9,
    );
    // One ADC per column (128 per array of 128 columns): 128 independent draws.
    let nx = sample_step(&p, &cfg, 0, 0, 128.0);
    let off: Vec<f64> = nx.offset[..p.pc].iter().map(|&o| o as f64).collect();
    let gain: Vec<f64> = nx.gain[..p.pc].iter().map(|&g| (g as f64 - 1.0) * 4095.0).collect();
    let (mo, vo) = mean_var(&off);
    let (mg, vg) = mean_var(&gain);
    assert!(mo.abs() < 0.2 && (vo.sqrt() / 0.5 - 1.0).abs() < 0.2, "offset {mo} {vo}");
    assert!(mg.abs() < 0.8 && (vg.sqrt() / 2.0 - 1.0).abs() < 0.2, "gain {mg} {vg}");
    // A counter-based key: the same words give the same bits.
    let key = Key::new(1, 2, super::rng::Stream::Read, 3);
    assert_eq!(key.bits(&[4, 5]), key.bits(&[4, 5]));
    assert_ne!(key.bits(&[4, 5]), key.bits(&[5, 4]));
}

#[test]
fn columns_that_share_an_adc_share_its_errors() {
    // 128 outputs x 2 columns = 256 physical columns: two arrays of 128 columns.
    let p = small(16, 128, ramp);
    assert_eq!(p.pc, 256);
    let cfg = NoiseConfig::new(
        spec(|s| {
            s.adc_gain_sigma_lsb = 2.0;
            s.adc_offset_sigma_lsb = 0.5;
            s.adc_dnl_sigma_lsb = 0.3;
        }),
        9,
    );
    let distinct = |v: &[f32]| {
        let mut v: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    // One ADC per array: two values; four ADCs per array: eight; half an ADC: one.
    for (per_array, adcs) in [(1.0, 2), (4.0, 8), (0.5, 1), (128.0, 256)] {
        let nx = sample_step(&p, &cfg, 0, 0, per_array);
        assert_eq!(distinct(&nx.offset[..p.pc]), adcs, "{per_array} ADCs per array");
        assert_eq!(distinct(&nx.gain[..p.pc]), adcs, "{per_array} ADCs per array");
        let mut tables: Vec<u32> = nx.inl_of[..p.pc].to_vec();
        tables.dedup();
        assert_eq!(tables.len(), adcs, "{per_array} ADCs per array: transfer curves");
        // Four ADCs per array: columns 0..32 on the first, 32..64 on the second.
        if per_array == 4.0 {
            assert_eq!(nx.offset[0], nx.offset[31]);
            assert_ne!(nx.offset[31], nx.offset[32]);
        }
    }
}

#[test]
fn f32_normals_are_accurate() {
    use super::rng::{ln_f32, normal_pair_f32, sincos_2pi};
    // ln over (0, 1] and beyond, against f64.
    for i in 0..200_000u32 {
        let x = f32::from_bits(0x2f80_0000 + i * 1361);
        let (got, want) = (ln_f32(x) as f64, (x as f64).ln());
        assert!((got - want).abs() <= 4e-7 * want.abs().max(1.0), "ln {x}: {got} vs {want}");
    }
    // sin and cos of 2πu at 24-bit u, against f64.
    for n in (0..1u32 << 24).step_by(97) {
        let u = n as f32 / 16_777_216.0;
        let (s, c) = sincos_2pi(u);
        let a = std::f64::consts::TAU * u as f64;
        assert!((s as f64 - a.sin()).abs() < 3e-7, "sin at {u}: {s} vs {}", a.sin());
        assert!((c as f64 - a.cos()).abs() < 3e-7, "cos at {u}: {c} vs {}", a.cos());
    }
    // Moments and tails of 2·10^6 normals from consecutive hashes.
    let (mut s1, mut s2, mut s4, mut tail, mut n) = (0f64, 0f64, 0f64, 0usize, 0f64);
    for i in 0..1_000_000u64 {
        let (a, b) = normal_pair_f32(super::rng::mix(i));
        for z in [a as f64, b as f64] {
            assert!(z.is_finite() && z.abs() < 6.7);
            s1 += z;
            s2 += z * z;
            s4 += z * z * z * z;
            tail += (z.abs() > 3.0) as usize;
            n += 1.0;
        }
    }
    let (m, v, k) = (s1 / n, s2 / n, s4 / n);
    assert!(m.abs() < 4.0 / n.sqrt(), "mean {m}");
    assert!((v - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "variance {v}");
    assert!((k - 3.0).abs() < 4.0 * (96.0 / n).sqrt(), "fourth moment {k}");
    // P(|z| > 3) = 0.0026998.
    let p = tail as f64 / n;
    assert!((p - 0.0026998).abs() < 4.0 * (0.0027 / n).sqrt(), "tail {p}");
}

/// The kernel compiled for AVX-512, for AVX2 and portable gives the same bits, with one-bit
/// and two-bit digits, ADC errors and read noise.
#[test]
fn kernel_paths_agree_bit_for_bit() {
    use super::kernel::{run_tile, tile_portable, TileJob, BLOCK};
    use super::rng::mix;
    let (rows, words, pc_pad, vectors, slices) = (130, 3, 2 * BLOCK, 5, 4);
    let g: Vec<f32> = (0..rows * pc_pad)
        .map(|i| (mix(i as u64) % 1000) as f32 / 333.0 * (i % 3 != 0) as u32 as f32)
        .collect();
    let per_vec = words * 64;
    let vals: Vec<u16> = (0..vectors * per_vec)
        .map(|i| {
            if i % per_vec < rows && mix(i as u64 + 7).is_multiple_of(3) {
                (mix(i as u64) % 256) as u16
            } else {
                0
            }
        })
        .collect();
    let scale: Vec<f32> = (0..pc_pad).map(|c| 1.0 + (c % 5) as f32 * 0.01).collect();
    let shift: Vec<f32> = (0..pc_pad).map(|c| 0.5 + (c % 3) as f32 * 0.2).collect();
    let key = Key::new(1, 2, super::rng::Stream::Read, 3);
    let read_keys: Vec<Key> = (0..vectors * slices).map(|r| key.extend(&[r as u64])).collect();
    for dac_bits in [1u32, 2] {
        let digit = (1u16 << dac_bits) - 1;
        let mut masks = vec![0u64; vectors * slices * words];
        for v in 0..vectors {
            for r in 0..rows {
                for i in 0..slices {
                    if (vals[v * per_vec + r] >> (i as u32 * dac_bits)) & digit != 0 {
                        masks[(v * slices + i) * words + r / 64] |= 1 << (r % 64);
                    }
                }
            }
        }
        // One ADC with a non-linear transfer curve for every column (the scalar path).
        let inl_spec = spec(|s| s.adc_dnl_sigma_lsb = 0.5);
        let table = super::sample::adc_thresholds(
            &inl_spec,
            255,
            Key::new(1, 0, super::rng::Stream::AdcDnl, 0),
        );
        let table_of = vec![0u32; pc_pad];
        for (sigma_read, with_inl) in [(0.0, false), (0.3, false), (0.3, true)] {
            let job = TileJob {
                g: &g,
                rows,
                masks: &masks,
                vector_stride: slices * words,
                words,
                vals: &vals,
                per_vec,
                vectors,
                slices,
                dac_bits,
                pc: pc_pad - 3,
                pc_pad,
                scale: &scale,
                shift: &shift,
                top: 255.0,
                sigma_read,
                read_keys: &read_keys,
                inl: if with_inl { &table } else { &[] },
                inl_of: if with_inl { &table_of } else { &[] },
            };
            let mut portable = vec![0i64; vectors * pc_pad];
            tile_portable(&job, &mut portable);
            assert!(portable.iter().any(|&c| c != 0));
            let mut fast = vec![0i64; vectors * pc_pad];
            run_tile(&job, &mut fast);
            assert_eq!(fast, portable, "dac_bits {dac_bits}, σ_r {sigma_read}");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0i64; vectors * pc_pad];
                // SAFETY: AVX2 was detected.
                unsafe { super::kernel::tile_avx2(&job, &mut avx2) };
                assert_eq!(avx2, portable, "AVX2, dac_bits {dac_bits}, σ_r {sigma_read}");
            }
        }
    }
}

/// The tests' sequential generator is splitmix64: its published first outputs for seed 0, and
/// `int` stays in its range (both ends reached) in any integer type.
#[test]
fn splitmix64_is_the_reference_generator() {
    let mut r = super::SplitMix64(0);
    assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    let mut r = super::SplitMix64(7);
    let v: Vec<i32> = (0..200).map(|_| r.int(-3, 3)).collect();
    assert!(v.iter().all(|x| (-3..=3).contains(x)));
    assert!(v.contains(&-3) && v.contains(&3));
    let w: i64 = r.int(i64::from(i32::MAX) + 1, i64::from(i32::MAX) + 1);
    assert_eq!(w, i64::from(i32::MAX) + 1);
    assert!((0..100).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
}

/// One-slice flipped crossbar: 4-bit weights stored as `u = w + 8` in 4-bit cells (`2^b_c − 1 =
/// 15`), 1-bit inputs, a lossless 12-bit ADC.
fn flipped_small(k: usize, m: usize, w: impl Fn(usize, usize) -> i32 + Sync) -> PreparedCrossbar {
    one_slice(WeightEncoding::Flipped, 4, k, m, w)
}

#[test]
fn flipped_columns_are_exact_without_noise_and_vary_in_their_stored_cells() {
    // Output 0: u = 13 on 10 rows sums to 130 ≥ 128 (the top bit of 10·15 = 150): flipped,
    // each cell stores 15 − 13 = 2. Output 1: u = 3, not flipped.
    let k = 10;
    let p = flipped_small(k, 2, |_, n| if n == 0 { 5 } else { -5 });
    assert_eq!(p.flip[..2], [true, false]);
    let x = vec![1i32; k];
    assert_eq!(accs(&p, &NoiseConfig::default(), 0, &x), vec![50, -50]);
    // ε = +1 at σ = 0.5 on output 0's cells: the stored 2 conducts 3, so the column reads
    // 15·10 − 3·10 = 120 and the weight sum 120 − 8·10 = 40 (a variation of the unflipped
    // 13 would have given 1.5·130 − 80 = 115).
    let cfg = NoiseConfig::new(spec(|s| s.sigma_prog = 0.5), 1).with_pattern(Arc::new(Output0));
    assert_eq!(accs(&p, &cfg, 0, &x), vec![40, -50]);
    // Several tiles with their own choices, random inputs: the noiseless limit is exact.
    let (k, m, nvec) = (300, 6, 20);
    let w =
        |r: usize, n: usize| if (r / 128 + n).is_multiple_of(2) { 6 - (r % 3) as i32 } else { -7 };
    let p = flipped_small(k, m, w);
    assert!(p.flip.iter().any(|&f| f) && p.flip.iter().take(p.pc).any(|&f| !f));
    let x: Vec<i32> = (0..nvec * k).map(|i| ((i * 7) % 3 == 0) as i32).collect();
    let exact: Vec<i64> = (0..nvec)
        .flat_map(|v| {
            let x = &x;
            (0..m).map(move |n| (0..k).map(|r| x[v * k + r] as i64 * w(r, n) as i64).sum())
        })
        .collect();
    let tiny = NoiseConfig::new(spec(|s| s.sigma_prog = 1e-9), 1);
    assert_eq!(accs(&p, &tiny, 0, &x), exact);
    assert_eq!(accs(&p, &NoiseConfig::default(), 0, &x), exact);
}
