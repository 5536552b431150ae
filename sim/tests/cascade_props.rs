//! Cascade weight downsampling (`docs/cascade.md`, `sim/src/program/cascade.rs`) against
//! naive references written here:
//! - the definition: a step at width `b` computes `Σ_k (q_x[k] − z_x)·w_b[k,n]·2^(B−b) + bias`
//!   with `w_b` the iterated one-bit roundings of the source codes, written out below;
//! - on a lossless crossbar (both encodings, cell bits 1..4, B in 4..8, every b from B down to
//!   2) the program at width `b` equals the definition exactly, both through the crossbar
//!   kernel (with statistics) and the fast path;
//! - on a lossy crossbar it equals the stored array with only its top slices driven: every
//!   partial sum taken slice by slice from the *stored* B-bit cells, the ADC of
//!   `docs/hardware-model.md` §3 as written there, shift-and-add at the slices' own positions, then
//!   the digital residual; the ADC statistics are those of the top slices.

use cimc_backends::arith::{code_range, FixedMultiplier};
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Crossbar, Elem, IntTensor, Program, Requant, Step, Window,
};
use cimc_interp::Tensor;
use cimc_ir::{CrossbarGeometry, WeightEncoding};
use cimc_sim::noise::SplitMix64 as Rng;
use cimc_sim::program::{cascade_codes, ProgramRunner, WeightWidths};
use cimc_sim::AdcStats;
use proptest::prelude::*;

/// splitmix64.
/// The definition of one step down, written from the text: `round_half_even(w / 2)` on reals,
/// then the clamp to the narrow range of `b − 1` bits.
fn naive_codes(w: i32, from: u32, to: u32) -> i32 {
    let mut v = w as f64;
    for b in (to + 1..=from).rev() {
        let top = ((1i64 << (b - 2)) - 1) as f64;
        v = (v / 2.0).round_ties_even().clamp(-top, top);
    }
    v as i32
}

#[derive(Clone, Debug)]
struct Case {
    xb: Crossbar,
    in_bits: u32,
    in_signed: bool,
    z_x: i32,
    full_range: bool,
}

fn column_groups(x: &Crossbar, m: usize, mg: usize) -> Vec<usize> {
    let s_w = x.magnitude_bits.div_ceil(x.geometry.cell_bits) as usize;
    let per_out = if x.geometry.encoding == WeightEncoding::Differential { 2 * s_w } else { s_w };
    let cpg = (x.geometry.cols / per_out).max(1);
    (0..m).map(|n| (n / mg) * mg.div_ceil(cpg) + (n % mg) / cpg).collect()
}

fn case(rng: &mut Rng, m: usize, mg: usize, lossless: bool) -> Case {
    let in_bits = rng.int(2, 8) as u32;
    let in_signed = rng.coin();
    let (ilo, ihi) = code_range(in_bits as u8, in_signed);
    let encoding = WeightEncoding::ALL[rng.int(0, 2) as usize];
    let weight_bits = rng.int(4, 8) as u32;
    let full_range = rng.int(0, 4) == 0;
    let magnitude_bits = match encoding {
        WeightEncoding::Differential if !full_range => weight_bits - 1,
        _ => weight_bits,
    };
    let cell_bits = rng.int(1, 4) as u32;
    let s_w = magnitude_bits.div_ceil(cell_bits) as usize;
    let per_out = if encoding == WeightEncoding::Differential { 2 * s_w } else { s_w };
    let mut xb = Crossbar {
        geometry: CrossbarGeometry {
            encoding,
            rows: rng.int(1, 40) as usize,
            cols: per_out * rng.int(1, 3) as usize + rng.int(0, per_out as i64 - 1) as usize,
            cell_bits,
            dac_bits: rng.int(1, 3) as u32,
            adc_bits: if lossless { 16 } else { rng.int(1, 8) as u32 },
        },
        weight_bits,
        magnitude_bits,
        input_bits: in_bits,
        input_min: ilo,
        adc_step: vec![0],
        arrays: vec![],
    };
    if !lossless {
        let n = if rng.coin() { 1 } else { column_groups(&xb, m, mg).last().map_or(1, |g| g + 1) };
        xb.adc_step = (0..n).map(|_| rng.int(0, 5) as u32).collect();
    }
    Case { xb, in_bits, in_signed, z_x: rng.int(ilo as i64, ihi as i64) as i32, full_range }
}

fn weights(rng: &mut Rng, c: &Case, count: usize) -> Vec<i32> {
    let wmax = (1i64 << (c.xb.weight_bits - 1)) - 1;
    let wmin = if c.full_range { -wmax - 1 } else { -wmax };
    (0..count)
        .map(|_| match rng.int(0, 7) {
            0 => wmin as i32,
            1 => wmax as i32,
            2 => 0,
            _ => rng.int(wmin, wmax) as i32,
        })
        .collect()
}

fn inputs(rng: &mut Rng, c: &Case, count: usize) -> Vec<i32> {
    let (lo, hi) = code_range(c.in_bits as u8, c.in_signed);
    (0..count)
        .map(|_| if rng.int(0, 3) == 0 { lo } else { rng.int(lo as i64, hi as i64) as i32 })
        .collect()
}

/// The identity requantization with an open clamp: the outputs are the accumulators.
fn identity() -> Requant {
    let one = FixedMultiplier::from_real(1.0).unwrap();
    Requant { mult: vec![one], zero_point: 0, lo: i32::MIN, hi: i32::MAX }
}

fn program(step: Step, xs: Vec<usize>, ys: Vec<usize>, c: &Case) -> Program {
    let buf = |name: &str, shape, bits, signed, zp| BufferDecl {
        name: String::from(name),
        shape,
        elem: Elem::Code(CodeType { bits, signed }),
        quant: Some(BufQuant { scale: vec![0.1], zero_point: vec![zp], axis: None }),
    };
    Program {
        name: "cascade".into(),
        buffers: vec![buf("x", xs, c.in_bits as u8, c.in_signed, c.z_x), buf("y", ys, 31, true, 0)],
        inputs: vec![0],
        outputs: vec![1],
        steps: vec![step],
        origins: vec!["op".into()],
        target: None,
    }
}

/// A matrix layer as the references see it.
struct Layer {
    /// `[n][k]` source codes of every output (all conv groups).
    cols: Vec<Vec<i32>>,
    /// Outputs per conv group.
    mg: usize,
    /// Per input vector: its conv group, its codes `[k]` (im2col'ed, padding = z_x), the output
    /// index of the group's first output and the stride between the group's outputs.
    vectors: Vec<(usize, Vec<i32>, usize, usize)>,
    z_x: i32,
    bias: Vec<i64>,
    numel: usize,
}

/// The weight slice `j` (cells of `cb` bits) of the unsigned magnitude `u`.
fn slice(u: i64, j: u32, cb: u32) -> i64 {
    (u >> (j * cb)) & ((1 << cb) - 1)
}

/// The stored cells of source code `w`: (sign, magnitude) per physical column.
fn stored(x: &Crossbar, w: i64) -> Vec<(i64, i64)> {
    match x.geometry.encoding {
        WeightEncoding::Differential => vec![(1, w.max(0)), (-1, (-w).max(0))],
        WeightEncoding::Offset | WeightEncoding::Flipped => {
            vec![(1, w + (1 << (x.weight_bits - 1)))]
        }
    }
}

/// ISAAC's flip rule, written out: a tile's column of `rows` rows whose cells sum to `sum` is
/// stored complemented when `sum·(2^b_d − 1)`, its sum with every input at its largest, has
/// the top bit of `rows·(2^b_d − 1)·(2^b_c − 1)` set.
fn naive_flips(x: &Crossbar, rows: usize, sum: i64) -> bool {
    let dmax = (1i64 << x.geometry.dac_bits) - 1;
    let full = rows as i64 * dmax * ((1i64 << x.geometry.cell_bits) - 1);
    let mut top = 1i64;
    while top * 2 <= full {
        top *= 2;
    }
    x.geometry.encoding == WeightEncoding::Flipped && sum * dmax >= top
}

/// What the references compute at one width.
struct Want {
    /// The definition: `Σ (q − z_x)·w_b·2^d + bias`.
    def: Vec<i64>,
    /// The stored array, top slices driven through the ADC, plus the digital residual.
    xbar: Vec<i64>,
    hist: Vec<u64>,
    conversions: u64,
    clipped: u64,
}

fn references(l: &Layer, x: &Crossbar, b: u32) -> Want {
    let big_b = x.weight_bits;
    let d = big_b.saturating_sub(b);
    let j0 = d / x.geometry.cell_bits;
    let m = j0 * x.geometry.cell_bits;
    let s_w = x.magnitude_bits.div_ceil(x.geometry.cell_bits);
    let s_x = x.input_bits.div_ceil(x.geometry.dac_bits);
    let groups = column_groups(x, l.cols.len(), l.mg);
    let mut p_max = x.geometry.rows as u64
        * ((1 << x.geometry.dac_bits) - 1)
        * ((1 << x.geometry.cell_bits) - 1);
    if x.geometry.encoding == WeightEncoding::Flipped {
        // One bit less: below the top power of two.
        p_max = (1u64 << (63 - p_max.leading_zeros())) - 1;
    }
    let mut w = Want {
        def: vec![0; l.numel],
        xbar: vec![0; l.numel],
        hist: vec![0; p_max as usize + 1],
        conversions: 0,
        clipped: 0,
    };
    let z = l.z_x as i64;
    for (g, q, base, stride) in &l.vectors {
        let v: Vec<i64> = q.iter().map(|&q| (q - x.input_min) as i64).collect();
        for nl in 0..l.mg {
            let n = g * l.mg + nl;
            let col = &l.cols[n];
            let at = base + nl * stride;
            let e = if x.adc_step.len() == 1 { x.adc_step[0] } else { x.adc_step[groups[n]] };
            let wb: Vec<i64> =
                col.iter().map(|&w| (naive_codes(w, big_b, b) as i64) << d).collect();
            let dot =
                |ws: &[i64]| -> i64 { q.iter().zip(ws).map(|(&q, &w)| (q as i64 - z) * w).sum() };
            w.def[at] = dot(&wb) + l.bias[n];
            // The driven slices of the stored cells, partial sum by partial sum.
            let mut acc = 0i64;
            let signs = stored(x, 0).len();
            for t in 0..q.len().div_ceil(x.geometry.rows) {
                let rows = t * x.geometry.rows..((t + 1) * x.geometry.rows).min(q.len());
                for i in 0..s_x {
                    for j in j0..s_w {
                        for c in 0..signs {
                            let cell = |k: usize| {
                                slice(stored(x, col[k] as i64)[c].1, j, x.geometry.cell_bits)
                            };
                            let x_i = |k: usize| {
                                (v[k] >> (i * x.geometry.dac_bits))
                                    & ((1 << x.geometry.dac_bits) - 1)
                            };
                            let cmax = (1i64 << x.geometry.cell_bits) - 1;
                            let flip =
                                naive_flips(x, rows.len(), rows.clone().map(cell).sum::<i64>());
                            let stored_cell =
                                |k: usize| if flip { cmax - cell(k) } else { cell(k) };
                            let p: i64 = rows.clone().map(|k| x_i(k) * stored_cell(k)).sum();
                            // §3: A(P) = step · clamp(floor((P + step/2) / step), 0, top).
                            let step = 1i64 << e;
                            let code = (p + step / 2) / step;
                            let top = (1i64 << x.geometry.adc_bits) - 1;
                            w.hist[p as usize] += 1;
                            w.conversions += 1;
                            w.clipped += (code > top) as u64;
                            let mut a = step * code.min(top);
                            if flip {
                                // The digital side: (2^b_c − 1)·Σx − A(P̄).
                                a = cmax * rows.clone().map(x_i).sum::<i64>() - a;
                            }
                            acc += stored(x, 0)[c].0
                                * (a << (i * x.geometry.dac_bits + j * x.geometry.cell_bits));
                        }
                    }
                }
            }
            if x.geometry.encoding != WeightEncoding::Differential {
                acc -= (1i64 << (big_b - 1)) * v.iter().sum::<i64>();
            }
            // T: the code the driven slices hold, read from the slices.
            let t: Vec<i64> = col
                .iter()
                .map(|&wk| {
                    let cells = stored(x, wk as i64);
                    let val = |u: i64| -> i64 {
                        (j0..s_w)
                            .map(|j| {
                                slice(u, j, x.geometry.cell_bits) << (j * x.geometry.cell_bits - m)
                            })
                            .sum()
                    };
                    match x.geometry.encoding {
                        WeightEncoding::Differential => val(cells[0].1) - val(cells[1].1),
                        WeightEncoding::Offset | WeightEncoding::Flipped => {
                            val(cells[0].1) - (1i64 << (big_b - 1 - m))
                        }
                    }
                })
                .collect();
            acc += (x.input_min as i64 - z) * (t.iter().sum::<i64>() << m);
            let residual: Vec<i64> = wb.iter().zip(&t).map(|(&w, &t)| w - (t << m)).collect();
            w.xbar[at] = acc + dot(&residual) + l.bias[n];
        }
    }
    w
}

fn run(p: &Program, b: u32, input: &Tensor, stats: bool) -> (Vec<i64>, Option<AdcStats>) {
    let r = ProgramRunner::with_weight_widths(p, &WeightWidths::uniform(b)).unwrap();
    if stats {
        let mut st = AdcStats::default();
        let out = r.run_with_adc_stats(vec![input.clone()], &mut st).unwrap();
        (out[0].to_data().to_i64_vec(), Some(st))
    } else {
        (r.run(vec![input.clone()]).unwrap()[0].to_data().to_i64_vec(), None)
    }
}

/// Checks every width of `p` (one matrix step), from its own bits + 1 down to 2.
fn check(
    p: &Program,
    l: &Layer,
    c: &Case,
    input: &Tensor,
    lossless: bool,
) -> Result<(), TestCaseError> {
    let mut digital = p.clone();
    if let Step::Conv { crossbar, .. } | Step::Gemm { crossbar, .. } = &mut digital.steps[0] {
        *crossbar = None;
    }
    for b in (2..=c.xb.weight_bits + 1).rev() {
        let want = references(l, &c.xb, b);
        let (got, st) = run(p, b, input, true);
        let st = st.unwrap().steps[0].clone().unwrap();
        prop_assert_eq!(st.conversions, want.conversions, "b = {}", b);
        prop_assert_eq!(st.clipped, want.clipped, "b = {}", b);
        prop_assert!(st.histogram == want.hist, "b = {}: histograms differ", b);
        prop_assert_eq!(&got, &want.xbar, "b = {}: crossbar path", b);
        let (plain, _) = run(p, b, input, false);
        prop_assert_eq!(&plain, &want.xbar, "b = {}: plain run", b);
        prop_assert_eq!(&run(&digital, b, input, false).0, &want.def, "b = {}: digital step", b);
        if lossless {
            prop_assert_eq!(&got, &want.def, "b = {}: lossless crossbar against the definition", b);
        }
    }
    Ok(())
}

fn gemm_case(
    rows: usize,
    k: usize,
    n: usize,
    seed: u64,
    lossless: bool,
) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let c = case(&mut rng, n, n, lossless);
    let x = inputs(&mut rng, &c, rows * k);
    let w = weights(&mut rng, &c, k * n);
    let bias: Vec<i64> = (0..n).map(|_| rng.int(-5000, 5000)).collect();
    let layer = Layer {
        cols: (0..n).map(|o| (0..k).map(|kk| w[kk * n + o]).collect()).collect(),
        mg: n,
        vectors: (0..rows).map(|r| (0, x[r * k..][..k].to_vec(), r * n, 1)).collect(),
        z_x: c.z_x,
        bias: bias.clone(),
        numel: rows * n,
    };
    let p = program(
        Step::Gemm {
            input: 0,
            output: 1,
            input_zero_point: c.z_x,
            weights: IntTensor { shape: vec![k, n], bits: c.xb.weight_bits as u8, data: w },
            bias,
            requant: identity(),
            crossbar: Some(c.xb.clone()),
        },
        vec![rows, k],
        vec![rows, n],
        &c,
    );
    let input =
        Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[rows, k]), x).unwrap());
    check(&p, &layer, &c, &input, lossless)
}

/// A 2-D convolution: `nb` samples, `groups` groups of `cg` input and `mg` output channels,
/// an `h × w` image, a `kh × kw` kernel, stride `s`, padding `pad` on every side.
fn conv_case(
    (nb, groups, cg, mg): (usize, usize, usize, usize),
    (h, w, kh, kw): (usize, usize, usize, usize),
    (s, pad): (usize, usize),
    seed: u64,
    lossless: bool,
) -> Result<(), TestCaseError> {
    if h + 2 * pad < kh || w + 2 * pad < kw {
        return Ok(());
    }
    let (oh, ow) = ((h + 2 * pad - kh) / s + 1, (w + 2 * pad - kw) / s + 1);
    let (cin, m, kk) = (groups * cg, groups * mg, cg * kh * kw);
    let mut rng = Rng(seed);
    let c = case(&mut rng, m, mg, lossless);
    let x = inputs(&mut rng, &c, nb * cin * h * w);
    let wt = weights(&mut rng, &c, m * kk);
    let bias: Vec<i64> = (0..m).map(|_| rng.int(-5000, 5000)).collect();
    let mut vectors = Vec::new();
    for g in 0..groups {
        for b in 0..nb {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut q = Vec::with_capacity(kk);
                    for ci in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky) as i64 - pad as i64;
                                let ix = (ox * s + kx) as i64 - pad as i64;
                                let inside =
                                    iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                                q.push(if inside {
                                    x[((b * cin + g * cg + ci) * h + iy as usize) * w + ix as usize]
                                } else {
                                    c.z_x
                                });
                            }
                        }
                    }
                    // Output (b, g·mg + nl, oy, ox).
                    vectors.push((g, q, ((b * m + g * mg) * oh + oy) * ow + ox, oh * ow));
                }
            }
        }
    }
    let layer = Layer {
        cols: (0..m).map(|o| wt[o * kk..][..kk].to_vec()).collect(),
        mg,
        vectors,
        z_x: c.z_x,
        bias: bias.clone(),
        numel: nb * m * oh * ow,
    };
    let p = program(
        Step::Conv {
            input: 0,
            output: 1,
            input_zero_point: c.z_x,
            weights: IntTensor {
                shape: vec![m, cg, kh, kw],
                bits: c.xb.weight_bits as u8,
                data: wt,
            },
            bias,
            window: Window {
                kernel: vec![kh, kw],
                strides: vec![s, s],
                dilations: vec![1, 1],
                pads: vec![pad; 4],
            },
            group: groups,
            requant: identity(),
            crossbar: Some(c.xb.clone()),
        },
        vec![nb, cin, h, w],
        vec![nb, m, oh, ow],
        &c,
    );
    let input =
        Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[nb, cin, h, w]), x).unwrap());
    check(&p, &layer, &c, &input, lossless)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn gemm_lossless_equals_the_definition(rows in 1usize..4, k in 1usize..90, n in 1usize..8, seed: u64) {
        gemm_case(rows, k, n, seed, true)?;
    }

    #[test]
    fn gemm_lossy_drives_the_stored_top_slices(rows in 1usize..4, k in 1usize..90, n in 1usize..8, seed: u64) {
        gemm_case(rows, k, n, seed, false)?;
    }

    #[test]
    fn conv_lossless_equals_the_definition(
        shape in (1usize..3, 1usize..3, 1usize..4, 1usize..4),
        img in (2usize..6, 2usize..6, 1usize..4, 1usize..4),
        sp in (1usize..3, 0usize..2),
        seed: u64,
    ) {
        conv_case(shape, img, sp, seed, true)?;
    }

    #[test]
    fn conv_lossy_drives_the_stored_top_slices(
        shape in (1usize..3, 1usize..3, 1usize..4, 1usize..4),
        img in (2usize..6, 2usize..6, 1usize..4, 1usize..4),
        sp in (1usize..3, 0usize..2),
        seed: u64,
    ) {
        conv_case(shape, img, sp, seed, false)?;
    }

    #[test]
    fn codes_follow_the_definition(w in -32767i32..32768, from in 2u32..17, to in 2u32..17) {
        let top = (1i32 << (from - 1)) - 1;
        let w = w.clamp(-top, top);
        let got = cascade_codes(&[w], from, to)[0];
        prop_assert_eq!(got, if to >= from { w } else { naive_codes(w, from, to) });
    }
}

#[test]
fn iterated_rounding_is_not_one_rounding() {
    // 5 → 2 (2.5 to even) → 1 → 0 (0.5 to even); round(5 / 8) would be 1.
    assert_eq!(cascade_codes(&[5], 8, 5), vec![0]);
    assert_eq!(cascade_codes(&[127, -127, 3, -3, 1, -1], 8, 7), vec![63, -63, 2, -2, 0, 0]);
    assert_eq!(cascade_codes(&[127], 8, 2), vec![1]);
    assert_eq!(cascade_codes(&[-128], 8, 7), vec![-63]);
}

/// Two Gemm layers `a` → `b` (8-bit weights, no crossbar), with ramp weights.
fn two_layers() -> Program {
    let c = Case {
        xb: Crossbar {
            geometry: CrossbarGeometry {
                encoding: WeightEncoding::Differential,
                rows: 8,
                cols: 16,
                cell_bits: 2,
                dac_bits: 1,
                adc_bits: 8,
            },
            weight_bits: 8,
            magnitude_bits: 7,
            input_bits: 8,
            input_min: 0,
            adc_step: vec![0],
            arrays: vec![],
        },
        in_bits: 8,
        in_signed: false,
        z_x: 3,
        full_range: false,
    };
    let gemm = |input, output, crossbar| Step::Gemm {
        input,
        output,
        input_zero_point: 3,
        weights: IntTensor {
            shape: vec![4, 4],
            bits: 8,
            data: (0..16).map(|i| i * 16 - 121).collect(),
        },
        bias: vec![1, 2, 3, 4],
        requant: Requant {
            mult: vec![FixedMultiplier::from_real(0.001).unwrap()],
            zero_point: 0,
            lo: 0,
            hi: 255,
        },
        crossbar,
    };
    let mut p = program(gemm(0, 1, None), vec![2, 4], vec![2, 4], &c);
    p.buffers[1].elem = Elem::Code(CodeType { bits: 8, signed: false });
    p.buffers.push(p.buffers[1].clone());
    p.buffers[2].name = "z".into();
    p.steps.push(gemm(1, 2, Some(c.xb.clone())));
    p.origins = vec!["a".into(), "b".into()];
    p.outputs = vec![2];
    p
}

#[test]
fn widths_per_layer_and_errors() {
    let p = two_layers();
    let x = Tensor::I32(
        ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(&[2, 4]),
            vec![0, 50, 100, 255, 7, 9, 200, 3],
        )
        .unwrap(),
    );
    let out = |w: &WeightWidths| {
        ProgramRunner::with_weight_widths(&p, w).unwrap().run(vec![x.clone()]).unwrap()[0]
            .to_data()
            .to_i64_vec()
    };
    let compiled =
        ProgramRunner::new(&p).unwrap().run(vec![x.clone()]).unwrap()[0].to_data().to_i64_vec();
    // At or above the layers' own bits: the program as compiled.
    assert_eq!(out(&WeightWidths::uniform(8)), compiled);
    assert_eq!(out(&WeightWidths::uniform(12)), compiled);
    assert_eq!(out(&WeightWidths::default()), compiled);
    // A per-layer width overrides the uniform one; the other layer keeps the uniform one.
    let mut per_layer = WeightWidths::uniform(8);
    per_layer.layers.insert("a".into(), 3);
    let mut by_hand = p.clone();
    if let Step::Gemm { weights, .. } = &mut by_hand.steps[0] {
        weights.data = cascade_codes(&weights.data, 8, 3).iter().map(|&w| w << 5).collect();
    }
    let want = ProgramRunner::new(&by_hand).unwrap().run(vec![x.clone()]).unwrap()[0]
        .to_data()
        .to_i64_vec();
    assert_eq!(out(&per_layer), want);
    assert_ne!(want, compiled);
    // Errors name what is wrong.
    let err = |w: &WeightWidths| match ProgramRunner::with_weight_widths(&p, w) {
        Ok(_) => panic!("{w:?} was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(&WeightWidths::uniform(1)).contains("at least 2"));
    let mut unknown = WeightWidths::default();
    unknown.layers.insert("nope".into(), 4);
    assert!(err(&unknown).contains("'nope'"));
    let mut low = WeightWidths::default();
    low.layers.insert("b".into(), 0);
    assert!(err(&low).contains("input 'b'"));
}
