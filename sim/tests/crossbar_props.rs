//! The crossbar execution of Conv and Gemm steps (`docs/hardware-model.md` §1 and §3) against an
//! independent, deliberately naive reference written here: for random shapes (groups including
//! depthwise, strides, dilations, pads), code widths, zero points, both weight encodings and
//! random crossbar parameters (rows, columns, cell, DAC and ADC bits, ADC steps per layer or
//! per column group), the program's output codes equal the reference's, which computes every
//! partial sum `P[t,i,j,c]` by multiplying slices in nested loops and applies the ADC formula of
//! §3 as written there. Also: lossless parameters give the exact product (the `crossbar: None`
//! result); the ADC statistics equal the reference's histogram, conversion and clip counts.

use cimc_backends::arith::{code_range, requantize, FixedMultiplier};
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Crossbar, Elem, IntTensor, Program, Requant, Step, Window,
};
use cimc_interp::Tensor;
use cimc_ir::{CrossbarGeometry, WeightEncoding};
use cimc_sim::noise::SplitMix64 as Rng;
use cimc_sim::program::ProgramRunner;
use cimc_sim::AdcStats;
use proptest::prelude::*;

/// splitmix64: the test's own deterministic random numbers.
/// Everything random about one case but the shapes.
#[derive(Clone, Debug)]
struct Params {
    in_bits: u32,
    in_signed: bool,
    z_x: i32,
    /// How many inputs sit at the smallest code (v = 0), see [`inputs`].
    sparse: i64,
    xb: Crossbar,
    /// Weights may take −2^(b_w−1) (differential then needs b_w magnitude bits).
    full_range: bool,
    out_bits: u8,
    out_signed: bool,
    z_y: i32,
}

/// Column groups of §1, written out from the spec: `cpg` outputs per array, and a group's
/// outputs never share an array with another group's.
fn column_groups(x: &Crossbar, m: usize, mg: usize) -> Vec<usize> {
    let s_w = x.magnitude_bits.div_ceil(x.geometry.cell_bits) as usize;
    let per_out = if x.geometry.encoding == WeightEncoding::Differential { 2 * s_w } else { s_w };
    let cpg = (x.geometry.cols / per_out).max(1);
    let arrays_per_group = mg.div_ceil(cpg);
    (0..m).map(|n| (n / mg) * arrays_per_group + (n % mg) / cpg).collect()
}

fn params(rng: &mut Rng, m: usize, mg: usize, max_rows: i64) -> Params {
    let in_bits = rng.int(2, 8) as u32;
    let in_signed = rng.coin();
    let (ilo, ihi) = code_range(in_bits as u8, in_signed);
    let z_x = rng.int(ilo as i64, ihi as i64) as i32;
    let encoding = WeightEncoding::ALL[rng.int(0, 2) as usize];
    let weight_bits = rng.int(2, 8) as u32;
    let full_range = rng.int(0, 3) == 0;
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
            rows: rng.int(1, max_rows) as usize,
            cols: per_out * rng.int(1, 4) as usize + rng.int(0, per_out as i64 - 1) as usize,
            cell_bits,
            dac_bits: rng.int(1, 4) as u32,
            adc_bits: rng.int(1, 10) as u32,
        },
        weight_bits,
        magnitude_bits,
        input_bits: in_bits,
        input_min: ilo,
        adc_step: vec![],
        arrays: vec![],
    };
    let n_steps =
        if rng.coin() { 1 } else { column_groups(&xb, m, mg).last().map_or(1, |g| g + 1) };
    xb.adc_step = (0..n_steps).map(|_| rng.int(0, 6) as u32).collect();
    let out_bits = rng.int(8, 16) as u8;
    let out_signed = rng.coin();
    let (olo, ohi) = code_range(out_bits, out_signed);
    Params {
        in_bits,
        in_signed,
        z_x,
        sparse: rng.int(0, 4),
        xb,
        full_range,
        out_bits,
        out_signed,
        z_y: rng.int(olo as i64, ohi as i64) as i32,
    }
}

fn weights(rng: &mut Rng, p: &Params, count: usize) -> Vec<i32> {
    let wmax = (1i64 << (p.xb.weight_bits - 1)) - 1;
    let wmin = if p.full_range { -wmax - 1 } else { -wmax };
    (0..count)
        .map(|_| match rng.int(0, 7) {
            0 => wmin as i32,
            1 => wmax as i32,
            2 => 0,
            _ => rng.int(wmin, wmax) as i32,
        })
        .collect()
}

/// Random input codes; `sparse` 1..=3 puts more and more of them at the smallest code
/// (v = 0, as after a ReLU), 4 in runs of 64 (whole zero words).
fn inputs(rng: &mut Rng, p: &Params, count: usize) -> Vec<i32> {
    let (lo, hi) = code_range(p.in_bits as u8, p.in_signed);
    (0..count)
        .map(|i| {
            let zero = match p.sparse {
                0 => false,
                1 => rng.coin(),
                2 => rng.int(0, 19) != 0,
                3 => rng.int(0, 3) != 0 && rng.int(0, 3) != 0,
                _ => (i / 64) % 2 == 0 || rng.coin(),
            };
            if zero {
                lo
            } else {
                rng.int(lo as i64, hi as i64) as i32
            }
        })
        .collect()
}

/// Multipliers that map the accumulators' likely range onto the output codes, with at least
/// one code per few accumulator units for small layers (so differences show).
fn multipliers(rng: &mut Rng, p: &Params, k: usize, m: usize) -> Vec<FixedMultiplier> {
    let bound = k as f64 * (1u64 << p.in_bits) as f64 * (1u64 << p.xb.weight_bits) as f64;
    let top = (1u64 << (p.out_bits - 1)) as f64;
    (0..m)
        .map(|_| {
            let f = 0.5 + (rng.next_u64() % 1000) as f64 / 2000.0;
            FixedMultiplier::from_real((top / bound * 4.0 * f).min(3.0)).unwrap()
        })
        .collect()
}

/// The ADC statistics the reference gathers (histogram index P).
#[derive(Default, Debug, PartialEq)]
struct RefStats {
    hist: Vec<u64>,
    conversions: u64,
    clipped: u64,
}

/// §1 and §3 for one dot product, the slow way: `v` are the crossbar inputs (`q − q_min`),
/// `w` the column's weight codes, `e` its ADC exponent. Returns the shift-and-add sum
/// (with the offset correction of the offset encoding), before the input-offset correction
/// and the bias.
fn reference_dot(x: &Crossbar, v: &[i64], w: &[i64], e: u32, st: &mut RefStats) -> i64 {
    let k = v.len();
    let s_w = x.magnitude_bits.div_ceil(x.geometry.cell_bits);
    let s_x = x.input_bits.div_ceil(x.geometry.dac_bits);
    let signs: Vec<(i64, Vec<i64>)> = match x.geometry.encoding {
        WeightEncoding::Differential => vec![
            (1, w.iter().map(|&w| w.max(0)).collect()),
            (-1, w.iter().map(|&w| (-w).max(0)).collect()),
        ],
        WeightEncoding::Offset | WeightEncoding::Flipped => {
            vec![(1, w.iter().map(|&w| w + (1i64 << (x.weight_bits - 1))).collect())]
        }
    };
    let (dmax, cmax) = ((1i64 << x.geometry.dac_bits) - 1, (1i64 << x.geometry.cell_bits) - 1);
    let step = 1i64 << e;
    let top_code = (1i64 << x.geometry.adc_bits) - 1;
    let adc = |p: i64| -> (i64, bool) {
        let code = (p + step / 2).div_euclid(step);
        (step * code.clamp(0, top_code), code > top_code)
    };
    let mut acc = 0i64;
    let tiles = k.div_ceil(x.geometry.rows);
    for t in 0..tiles {
        let rows = t * x.geometry.rows..((t + 1) * x.geometry.rows).min(k);
        for i in 0..s_x {
            for j in 0..s_w {
                for (sign, u) in &signs {
                    let u_j = |kk: usize| (u[kk] >> (j * x.geometry.cell_bits)) % (cmax + 1);
                    let x_i = |kk: usize| (v[kk] >> (i * x.geometry.dac_bits)) % (dmax + 1);
                    // Flipped (ISAAC): the tile's column stores complements when its sum with
                    // every input at its largest has the top bit of the full range set.
                    let full = rows.len() as i64 * dmax * cmax;
                    let top_bit = (0..63).map(|b| 1i64 << b).filter(|&b| b <= full).max().unwrap();
                    let flip = x.geometry.encoding == WeightEncoding::Flipped
                        && rows.clone().map(u_j).sum::<i64>() * dmax >= top_bit;
                    let mut p = 0i64;
                    for kk in rows.clone() {
                        p += x_i(kk) * if flip { cmax - u_j(kk) } else { u_j(kk) };
                    }
                    let (mut a, clipped) = adc(p);
                    if flip {
                        a = cmax * rows.clone().map(x_i).sum::<i64>() - a;
                    }
                    st.hist[p as usize] += 1;
                    st.conversions += 1;
                    st.clipped += clipped as u64;
                    acc += sign * (a << (i * x.geometry.dac_bits + j * x.geometry.cell_bits));
                }
            }
        }
    }
    if x.geometry.encoding != WeightEncoding::Differential {
        acc -= (1i64 << (x.weight_bits - 1)) * v.iter().sum::<i64>();
    }
    acc
}

fn new_ref_stats(x: &Crossbar) -> RefStats {
    let mut p_max = x.geometry.rows as u64
        * ((1 << x.geometry.dac_bits) - 1)
        * ((1 << x.geometry.cell_bits) - 1);
    if x.geometry.encoding == WeightEncoding::Flipped {
        // Below the top power of two.
        p_max = (1u64 << (63 - p_max.leading_zeros())) - 1;
    }
    RefStats { hist: vec![0; p_max as usize + 1], conversions: 0, clipped: 0 }
}

fn code_buf(name: &str, shape: Vec<usize>, bits: u8, signed: bool, zp: i32) -> BufferDecl {
    BufferDecl {
        name: name.into(),
        shape,
        elem: Elem::Code(CodeType { bits, signed }),
        quant: Some(BufQuant { scale: vec![0.1], zero_point: vec![zp], axis: None }),
    }
}

fn out_dim(i: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (i + p0 + p1 >= span).then(|| (i + p0 + p1 - span) / s + 1)
}

fn tensor(shape: &[usize], x: Vec<i32>) -> Tensor {
    Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), x).unwrap())
}

fn codes(t: &Tensor) -> Vec<i32> {
    t.to_data().to_i64_vec().into_iter().map(|v| v as i32).collect()
}

/// The program of one matrix step, through the binary format.
fn one_step(step: Step, xs: Vec<usize>, ys: Vec<usize>, p: &Params) -> Program {
    let program = Program {
        name: "xbar".into(),
        buffers: vec![
            code_buf("x", xs, p.in_bits as u8, p.in_signed, p.z_x),
            code_buf("y", ys, p.out_bits, p.out_signed, p.z_y),
        ],
        inputs: vec![0],
        outputs: vec![1],
        steps: vec![step],
        origins: vec!["op".into()],
        target: None,
    };
    Program::from_bytes(&program.to_bytes()).unwrap()
}

fn with_crossbar(p: &Program, x: Option<Crossbar>) -> Program {
    let mut p = p.clone();
    match &mut p.steps[0] {
        Step::Conv { crossbar, .. } | Step::Gemm { crossbar, .. } => *crossbar = x,
        _ => unreachable!(),
    }
    p
}

/// Runs with and without statistics (same codes), checks the statistics against the
/// reference's, and returns the codes.
fn run_checked(program: &Program, x: Tensor, st: &RefStats) -> Result<Vec<i32>, TestCaseError> {
    let r = ProgramRunner::new(program).unwrap();
    let plain = codes(&r.run(vec![x.clone()]).unwrap()[0]);
    let mut stats = AdcStats::default();
    let counted = codes(&r.run_with_adc_stats(vec![x], &mut stats).unwrap()[0]);
    prop_assert_eq!(&plain, &counted, "statistics changed the result");
    let s = stats.steps[0].as_ref().unwrap();
    prop_assert_eq!(s.conversions, st.conversions);
    prop_assert_eq!(s.clipped, st.clipped);
    prop_assert!(s.histogram == st.hist, "histograms differ");
    Ok(plain)
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 4],
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..3, 1usize..4, 1usize..5, 1usize..5, 2usize..7, 2usize..7),
        (1usize..4, 1usize..4, 1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (0usize..3, 0usize..3, 0usize..3, 0usize..3),
        (any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (n, groups, cg, mg, h, w),
                (kh, kw, sh, sw, dh, dw),
                (p0, p1, p2, p3),
                (depthwise, seed),
            )| ConvCase {
                n,
                groups: if depthwise { groups * cg } else { groups },
                cg: if depthwise { 1 } else { cg },
                mg: if depthwise { 1 } else { mg },
                h,
                w,
                k: [kh, kw],
                stride: [sh, sw],
                dil: [dh, dw],
                pads: [p0, p1, p2, p3],
                seed,
            },
        )
}

/// The reference convolution: codes, and the statistics of every conversion.
fn reference_conv(
    c: &ConvCase,
    p: &Params,
    x: &[i32],
    w: &[i32],
    bias: &[i64],
    mult: &[FixedMultiplier],
    (oh, ow): (usize, usize),
) -> (Vec<i32>, RefStats) {
    let (cin, m) = (c.groups * c.cg, c.groups * c.mg);
    let kk = c.cg * c.k[0] * c.k[1];
    let steps = column_groups(&p.xb, m, c.mg);
    let (olo, ohi) = code_range(p.out_bits, p.out_signed);
    let mut st = new_ref_stats(&p.xb);
    let mut out = vec![0; c.n * m * oh * ow];
    for b in 0..c.n {
        for o in 0..m {
            let g = o / c.mg;
            let e =
                if p.xb.adc_step.len() == 1 { p.xb.adc_step[0] } else { p.xb.adc_step[steps[o]] };
            let wcol: Vec<i64> = w[o * kk..][..kk].iter().map(|&v| v as i64).collect();
            for y in 0..oh {
                for xx in 0..ow {
                    let mut v = Vec::with_capacity(kk);
                    for ci in 0..c.cg {
                        for ky in 0..c.k[0] {
                            for kx in 0..c.k[1] {
                                let iy =
                                    (y * c.stride[0] + ky * c.dil[0]) as i64 - c.pads[0] as i64;
                                let ix =
                                    (xx * c.stride[1] + kx * c.dil[1]) as i64 - c.pads[1] as i64;
                                let q = if iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < c.h
                                    && (ix as usize) < c.w
                                {
                                    x[((b * cin + g * c.cg + ci) * c.h + iy as usize) * c.w
                                        + ix as usize]
                                } else {
                                    p.z_x
                                };
                                v.push((q - p.xb.input_min) as i64);
                            }
                        }
                    }
                    let mut acc = reference_dot(&p.xb, &v, &wcol, e, &mut st);
                    acc += (p.xb.input_min - p.z_x) as i64 * wcol.iter().sum::<i64>() + bias[o];
                    out[((b * m + o) * oh + y) * ow + xx] =
                        requantize(acc, mult[o], p.z_y, olo, ohi);
                }
            }
        }
    }
    (out, st)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conv_matches_reference_crossbar(c in conv_case()) {
        let oh = out_dim(c.h, c.k[0], c.stride[0], c.dil[0], c.pads[0], c.pads[2]);
        let ow = out_dim(c.w, c.k[1], c.stride[1], c.dil[1], c.pads[1], c.pads[3]);
        let (Some(oh), Some(ow)) = (oh, ow) else { return Ok(()) };
        let mut rng = Rng(c.seed);
        let (cin, m) = (c.groups * c.cg, c.groups * c.mg);
        let kk = c.cg * c.k[0] * c.k[1];
        let p = params(&mut rng, m, c.mg, 70);
        let x = inputs(&mut rng, &p, c.n * cin * c.h * c.w);
        let w = weights(&mut rng, &p, m * kk);
        let bias: Vec<i64> = (0..m).map(|_| rng.int(-5000, 5000)).collect();
        let mult = multipliers(&mut rng, &p, kk, m);
        let (olo, ohi) = code_range(p.out_bits, p.out_signed);
        let (want, st) = reference_conv(&c, &p, &x, &w, &bias, &mult, (oh, ow));
        let program = one_step(
            Step::Conv {
                input: 0,
                output: 1,
                input_zero_point: p.z_x,
                weights: IntTensor { shape: vec![m, c.cg, c.k[0], c.k[1]], bits: p.xb.weight_bits as u8, data: w },
                bias,
                window: Window { kernel: c.k.to_vec(), strides: c.stride.to_vec(), dilations: c.dil.to_vec(), pads: c.pads.to_vec() },
                group: c.groups,
                requant: Requant { mult, zero_point: p.z_y, lo: olo, hi: ohi },
                crossbar: Some(p.xb.clone()),
            },
            vec![c.n, cin, c.h, c.w],
            vec![c.n, m, oh, ow],
            &p,
        );
        let got = run_checked(&program, tensor(&[c.n, cin, c.h, c.w], x.clone()), &st)?;
        prop_assert_eq!(got, want);

        // Lossless parameters: the exact product, with and without the kernel.
        let mut exact = p.xb.clone();
        exact.geometry.adc_bits = 16;
        exact.adc_step = vec![0];
        let plain = ProgramRunner::new(&with_crossbar(&program, None)).unwrap().run(vec![tensor(&[c.n, cin, c.h, c.w], x.clone())]).unwrap();
        let lossless = ProgramRunner::new(&with_crossbar(&program, Some(exact))).unwrap();
        let fast = lossless.run(vec![tensor(&[c.n, cin, c.h, c.w], x.clone())]).unwrap();
        let mut stats = AdcStats::default();
        let slow = lossless.run_with_adc_stats(vec![tensor(&[c.n, cin, c.h, c.w], x)], &mut stats).unwrap();
        prop_assert_eq!(codes(&fast[0]), codes(&plain[0]));
        prop_assert_eq!(codes(&slow[0]), codes(&plain[0]));
        prop_assert_eq!(stats.steps[0].as_ref().unwrap().clipped, 0);
    }

    #[test]
    fn gemm_matches_reference_crossbar(rows in 1usize..4, k in 1usize..300, n in 1usize..12, seed: u64) {
        let mut rng = Rng(seed);
        let max_rows = if rng.coin() { 70 } else { 140 };
        let p = params(&mut rng, n, n, max_rows);
        let x = inputs(&mut rng, &p, rows * k);
        let w = weights(&mut rng, &p, k * n);
        let bias: Vec<i64> = (0..n).map(|_| rng.int(-5000, 5000)).collect();
        let mult = multipliers(&mut rng, &p, k, n);
        let (olo, ohi) = code_range(p.out_bits, p.out_signed);
        let steps = column_groups(&p.xb, n, n);
        let mut st = new_ref_stats(&p.xb);
        let mut want = vec![0; rows * n];
        for r in 0..rows {
            let v: Vec<i64> = x[r * k..][..k].iter().map(|&q| (q - p.xb.input_min) as i64).collect();
            for o in 0..n {
                let e = if p.xb.adc_step.len() == 1 { p.xb.adc_step[0] } else { p.xb.adc_step[steps[o]] };
                let wcol: Vec<i64> = (0..k).map(|kk| w[kk * n + o] as i64).collect();
                let mut acc = reference_dot(&p.xb, &v, &wcol, e, &mut st);
                acc += (p.xb.input_min - p.z_x) as i64 * wcol.iter().sum::<i64>() + bias[o];
                want[r * n + o] = requantize(acc, mult[o], p.z_y, olo, ohi);
            }
        }
        let program = one_step(
            Step::Gemm {
                input: 0,
                output: 1,
                input_zero_point: p.z_x,
                weights: IntTensor { shape: vec![k, n], bits: p.xb.weight_bits as u8, data: w },
                bias,
                requant: Requant { mult, zero_point: p.z_y, lo: olo, hi: ohi },
                crossbar: Some(p.xb.clone()),
            },
            vec![rows, k],
            vec![rows, n],
            &p,
        );
        let got = run_checked(&program, tensor(&[rows, k], x.clone()), &st)?;
        prop_assert_eq!(got, want);

        let mut exact = p.xb.clone();
        exact.geometry.adc_bits = 16;
        exact.adc_step = vec![0];
        let plain = ProgramRunner::new(&with_crossbar(&program, None)).unwrap().run(vec![tensor(&[rows, k], x.clone())]).unwrap();
        let lossless = ProgramRunner::new(&with_crossbar(&program, Some(exact))).unwrap();
        let mut stats = AdcStats::default();
        let slow = lossless.run_with_adc_stats(vec![tensor(&[rows, k], x.clone())], &mut stats).unwrap();
        prop_assert_eq!(codes(&lossless.run(vec![tensor(&[rows, k], x)]).unwrap()[0]), codes(&plain[0]));
        prop_assert_eq!(codes(&slow[0]), codes(&plain[0]));
    }
}

/// A Conv → Reshape → Gemm program on crossbars that clip (per-layer steps), for the
/// statistics tests.
fn two_layer_program(rows: usize, adc_bits: u32, steps: [u32; 2]) -> (Program, Tensor) {
    let mut rng = Rng(7);
    let (n, c, h, w, m, nn) = (2, 3, 6, 6, 5, 4);
    let xb = |step: u32| Crossbar {
        geometry: CrossbarGeometry {
            encoding: WeightEncoding::Differential,
            rows,
            cols: 64,
            cell_bits: 2,
            dac_bits: 1,
            adc_bits,
        },
        weight_bits: 5,
        magnitude_bits: 4,
        input_bits: 6,
        input_min: 0,
        adc_step: vec![step],
        arrays: vec![],
    };
    let kk = c * 9;
    let k2 = m * h * w;
    let mult = |v: f64| vec![FixedMultiplier::from_real(v).unwrap()];
    let program = Program {
        name: "two".into(),
        buffers: vec![
            code_buf("x", vec![n, c, h, w], 6, false, 3),
            code_buf("y", vec![n, m, h, w], 6, false, 0),
            code_buf("r", vec![n, k2], 6, false, 0),
            code_buf("z", vec![n, nn], 8, true, 0),
        ],
        inputs: vec![0],
        outputs: vec![3],
        steps: vec![
            Step::Conv {
                input: 0,
                output: 1,
                input_zero_point: 3,
                weights: IntTensor {
                    shape: vec![m, c, 3, 3],
                    bits: 5,
                    data: (0..m * kk).map(|_| rng.int(-15, 15)).collect(),
                },
                bias: vec![0; m],
                window: Window {
                    kernel: vec![3, 3],
                    strides: vec![1, 1],
                    dilations: vec![1, 1],
                    pads: vec![1, 1, 1, 1],
                },
                group: 1,
                requant: Requant { mult: mult(0.01), zero_point: 0, lo: 0, hi: 63 },
                crossbar: Some(xb(steps[0])),
            },
            Step::Reshape { input: 1, output: 2 },
            Step::Gemm {
                input: 2,
                output: 3,
                input_zero_point: 0,
                weights: IntTensor {
                    shape: vec![k2, nn],
                    bits: 5,
                    data: (0..k2 * nn).map(|_| rng.int(-15, 15)).collect(),
                },
                bias: vec![0; nn],
                requant: Requant { mult: mult(0.001), zero_point: 0, lo: -128, hi: 127 },
                crossbar: Some(xb(steps[1])),
            },
        ],
        origins: vec!["conv".into(), "reshape".into(), "gemm".into()],
        target: None,
    };
    let x = tensor(&[n, c, h, w], (0..n * c * h * w).map(|_| rng.int(0, 63)).collect());
    (program, x)
}

#[test]
fn adc_stats_count_every_conversion_and_accumulate() {
    let (rows, adc_bits, steps) = (20, 3, [1, 1]);
    let (program, x) = two_layer_program(rows, adc_bits, steps);
    let r = ProgramRunner::new(&program).unwrap();
    let mut stats = AdcStats::default();
    let first = r.run_with_adc_stats(vec![x.clone()], &mut stats).unwrap();
    assert_eq!(codes(&first[0]), codes(&r.run(vec![x.clone()]).unwrap()[0]));
    let once = stats.clone();
    r.run_with_adc_stats(vec![x], &mut stats).unwrap();
    assert_eq!(stats.steps.len(), 3);
    assert!(stats.steps[1].is_none(), "the reshape has no ADC");
    // conversions = vectors · tiles · S_x · physical columns (weight slices 2, two signs).
    let counts =
        [(2 * 36) * 27usize.div_ceil(rows) * 6 * 5 * 4, 2 * 180usize.div_ceil(rows) * 6 * 4 * 4];
    for (i, want) in [(0, counts[0]), (2, counts[1])] {
        let s = stats.steps[i].as_ref().unwrap();
        let o = once.steps[i].as_ref().unwrap();
        assert_eq!(o.conversions, want as u64, "step {i}");
        assert_eq!(s.conversions, 2 * o.conversions);
        assert_eq!(s.clipped, 2 * o.clipped);
        assert!(s.histogram.iter().zip(&o.histogram).all(|(a, b)| *a == 2 * b));
        assert_eq!(s.histogram.len(), rows * 3 + 1);
        assert_eq!(s.histogram.iter().sum::<u64>(), s.conversions);
        // Recount: (P + half) >> e above the top code.
        let e = steps[i / 2];
        let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
        let recount: u64 = s
            .histogram
            .iter()
            .enumerate()
            .filter(|&(p, _)| (p as u64 + half) >> e > (1 << adc_bits) - 1)
            .map(|(_, &c)| c)
            .sum();
        assert_eq!(s.clipped, recount, "step {i}");
        assert!(s.clipped > 0, "step {i}: the case should clip");
        assert!(s.clip_rate() > 0.0 && s.clip_rate() < 1.0);
        assert!(s.percentile(1.0) as usize <= rows * 3 && s.percentile(0.0) <= s.percentile(0.5));
    }
    // Statistics of another program are refused.
    let mut wrong = AdcStats { steps: vec![None; 2] };
    let (_, x) = two_layer_program(rows, adc_bits, steps);
    assert!(r.run_with_adc_stats(vec![x], &mut wrong).is_err());
}

#[test]
fn crossbar_mismatches_are_errors_not_panics() {
    let (program, _) = two_layer_program(20, 5, [0, 0]);
    let set = |f: &dyn Fn(&mut Crossbar)| {
        let mut p = program.clone();
        if let Step::Conv { crossbar: Some(x), .. } = &mut p.steps[0] {
            f(x);
        }
        ProgramRunner::new(&p).err().map(|e| e.to_string()).unwrap_or_default()
    };
    // Weights up to ±15 need 4 magnitude bits.
    assert!(set(&|x| x.magnitude_bits = 3).contains("magnitude bits"));
    // Offset: 15 + 2^(5−1) = 31 needs 5 bits.
    assert!(set(&|x| {
        x.geometry.encoding = WeightEncoding::Offset;
        x.magnitude_bits = 4;
    })
    .contains("magnitude bits"));
    // 6-bit input codes do not fit 5 input bits, nor codes shifted by input_min 1.
    assert!(set(&|x| x.input_bits = 5).contains("input bits"));
    assert!(set(&|x| x.input_min = 1).contains("input bits"));
    // Per-column-group steps must cover every column group.
    assert!(set(&|x| {
        x.geometry.cols = 8;
        x.adc_step = vec![0, 0];
    })
    .contains("column groups"));
    assert!(set(&|_| {}).is_empty());
}

/// Reads a little-endian f32 `.npy` file (C order).
fn read_npy_f32(path: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).ok()?;
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).ok()?;
    assert!(header.contains("'<f4'") && header.contains("False"));
    let shape_s = &header[header.find("'shape': (")? + 10..];
    let shape: Vec<usize> =
        shape_s[..shape_s.find(')')?].split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let data = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((shape, data))
}

/// The crossbar of the benchmark: 128x128 arrays, 2-bit cells, bit-serial inputs, 8-bit ADC.
fn bench_crossbar(p: &Program, input: usize) -> Crossbar {
    let Elem::Code(ct) = p.buffers[input].elem else { panic!("f32 input to a matrix step") };
    Crossbar {
        geometry: CrossbarGeometry {
            encoding: WeightEncoding::Differential,
            rows: 128,
            cols: 128,
            cell_bits: 2,
            dac_bits: 1,
            adc_bits: 8,
        },
        weight_bits: 8,
        magnitude_bits: 7,
        input_bits: ct.bits as u32,
        input_min: ct.range().0,
        adc_step: vec![1],
        arrays: vec![],
    }
}

/// ResNet-18 at batch 1 with every Conv/Gemm on crossbars: seconds per image. Needs
/// `cimc compile resnet18_bn.onnx --calib imagenet_random_x.npy -o /tmp/r18.cimp`.
#[test]
#[ignore]
fn resnet18_crossbar_time() {
    let Ok(bytes) = std::fs::read("/tmp/r18.cimp") else {
        eprintln!("no /tmp/r18.cimp: skipped");
        return;
    };
    let exact = Program::from_bytes(&bytes).unwrap();
    let (shape, data) = read_npy_f32("/work/shared/data/imagenet_random_x.npy").unwrap();
    let per: usize = shape[1..].iter().product();
    let image = |i: usize| {
        let mut sh = shape.clone();
        sh[0] = 1;
        Tensor::F32(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&sh), data[i * per..][..per].to_vec())
                .unwrap(),
        )
    };
    let with_crossbar = |only: Option<usize>| {
        let mut p = exact.clone();
        let bufs = p.clone();
        for (i, s) in p.steps.iter_mut().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            if let Step::Conv { input, crossbar, .. } | Step::Gemm { input, crossbar, .. } = s {
                *crossbar = Some(bench_crossbar(&bufs, *input));
            }
        }
        p
    };
    // CPU seconds of this process (all threads), from /proc (Linux).
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 =
            f.get(11..13).map_or(0.0, |v| v.iter().map(|t| t.parse::<f64>().unwrap_or(0.0)).sum());
        ticks / 100.0
    };
    let time = |p: &Program, reps: usize| {
        let r = ProgramRunner::new(p).unwrap();
        r.run(vec![image(0)]).unwrap();
        let c0 = cpu();
        let t0 = std::time::Instant::now();
        for k in 0..reps {
            r.run(vec![image(k % shape[0])]).unwrap();
        }
        eprintln!(
            "  {reps} runs: {:.3} s wall, {:.3} s cpu per image",
            t0.elapsed().as_secs_f64() / reps as f64,
            (cpu() - c0) / reps as f64
        );
        // The fastest of `reps` runs (other processes share the machine).
        (0..reps)
            .map(|k| {
                let t0 = std::time::Instant::now();
                r.run(vec![image(k % shape[0])]).unwrap();
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let full = with_crossbar(None);
    if let Ok(reps) = std::env::var("CIMC_BENCH_ONLY") {
        // Only the crossbar program, for `perf stat`.
        time(&full, reps.parse().unwrap_or(10));
        return;
    }
    let t_prep = std::time::Instant::now();
    ProgramRunner::new(&full).unwrap();
    eprintln!("prepare: {:.3} s", t_prep.elapsed().as_secs_f64());
    let t_exact = time(&exact, 5);
    let t_full = time(&full, 5);
    eprintln!("exact program: {t_exact:.3} s/image; crossbar program: {t_full:.3} s/image");
    if std::env::var("CIMC_BENCH_LAYERS").is_ok() {
        // Each matrix step alone, on its real input (kept as an output of the exact program).
        let mut keep = exact.clone();
        let matrix: Vec<usize> = (0..exact.steps.len())
            .filter(|&i| matches!(exact.steps[i], Step::Conv { .. } | Step::Gemm { .. }))
            .collect();
        let input_of = |i: usize| match &exact.steps[i] {
            Step::Conv { input, output, .. } | Step::Gemm { input, output, .. } => {
                (*input, *output)
            }
            _ => unreachable!(),
        };
        keep.outputs = matrix.iter().map(|&i| input_of(i).0).collect();
        keep.outputs.sort();
        keep.outputs.dedup();
        let acts = ProgramRunner::new(&keep).unwrap().run(vec![image(0)]).unwrap();
        let mut total = 0.0;
        for &i in &matrix {
            let (input, output) = input_of(i);
            let act = &acts[keep.outputs.binary_search(&input).unwrap()];
            let mut one = full.clone();
            one.steps = vec![full.steps[i].clone()];
            one.origins = vec![full.origins[i].clone()];
            one.inputs = vec![input];
            one.outputs = vec![output];
            let r = ProgramRunner::new(&one).unwrap();
            let t = (0..3)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    r.run(vec![act.clone()]).unwrap();
                    t0.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            total += t;
            eprintln!("step {i:2} {:52} {:.4} s", exact.origins[i], t);
        }
        eprintln!("sum of matrix steps: {total:.3} s");
    }
}
