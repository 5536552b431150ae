//! The crossbar execution of Conv and Gemm steps (hardware-model §1 and §3) against an
//! independent, deliberately naive reference written here: for random shapes (groups including
//! depthwise, strides, dilations, pads), code widths, zero points, both weight encodings and
//! random crossbar parameters (rows, columns, cell, DAC and ADC bits, ADC steps per layer or
//! per column group), the program's output codes equal the reference's, which computes every
//! partial sum `P[t,i,j,c]` by multiplying slices in nested loops and applies the ADC formula of
//! §3 as written there. Also: lossless parameters give the exact product (the `crossbar: None`
//! result); the ADC statistics equal the reference's histogram, conversion and clip counts.

use cimc_backends::arith::{code_range, requantize, FixedMultiplier};
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Crossbar, Elem, Encoding, IntTensor, Program, Requant, Step,
    Window,
};
use cimc_interp::program::ProgramRunner;
use cimc_interp::{AdcStats, Tensor};
use proptest::prelude::*;

/// splitmix64: the test's own deterministic random numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Everything random about one case but the shapes.
#[derive(Clone, Debug)]
struct Params {
    in_bits: u32,
    in_signed: bool,
    z_x: i32,
    /// Fraction (in 1/4) of inputs at the smallest code (v = 0), to exercise sparse inputs.
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
    let s_w = x.magnitude_bits.div_ceil(x.cell_bits) as usize;
    let per_out = if x.encoding == Encoding::Differential { 2 * s_w } else { s_w };
    let cpg = (x.cols / per_out).max(1);
    let arrays_per_group = mg.div_ceil(cpg);
    (0..m).map(|n| (n / mg) * arrays_per_group + (n % mg) / cpg).collect()
}

fn params(rng: &mut Rng, m: usize, mg: usize) -> Params {
    let in_bits = rng.int(2, 8) as u32;
    let in_signed = rng.coin();
    let (ilo, ihi) = code_range(in_bits as u8, in_signed);
    let z_x = rng.int(ilo as i64, ihi as i64) as i32;
    let encoding = if rng.coin() { Encoding::Differential } else { Encoding::Offset };
    let weight_bits = rng.int(2, 8) as u32;
    let full_range = rng.int(0, 3) == 0;
    let magnitude_bits = match encoding {
        Encoding::Differential if !full_range => weight_bits - 1,
        _ => weight_bits,
    };
    let cell_bits = rng.int(1, 4) as u32;
    let s_w = magnitude_bits.div_ceil(cell_bits) as usize;
    let per_out = if encoding == Encoding::Differential { 2 * s_w } else { s_w };
    let mut xb = Crossbar {
        encoding,
        rows: rng.int(1, 70) as usize,
        cols: per_out * rng.int(1, 4) as usize + rng.int(0, per_out as i64 - 1) as usize,
        cell_bits,
        dac_bits: rng.int(1, 4) as u32,
        adc_bits: rng.int(1, 10) as u32,
        weight_bits,
        magnitude_bits,
        input_bits: in_bits,
        input_min: ilo,
        adc_step: vec![],
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
        sparse: rng.int(0, 3),
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

fn inputs(rng: &mut Rng, p: &Params, count: usize) -> Vec<i32> {
    let (lo, hi) = code_range(p.in_bits as u8, p.in_signed);
    (0..count)
        .map(|_| if rng.int(0, 3) < p.sparse { lo } else { rng.int(lo as i64, hi as i64) as i32 })
        .collect()
}

/// Multipliers that map the accumulators' likely range onto the output codes, with at least
/// one code per few accumulator units for small layers (so differences show).
fn multipliers(rng: &mut Rng, p: &Params, k: usize, m: usize) -> Vec<FixedMultiplier> {
    let bound = k as f64 * (1u64 << p.in_bits) as f64 * (1u64 << p.xb.weight_bits) as f64;
    let top = (1u64 << (p.out_bits - 1)) as f64;
    (0..m)
        .map(|_| {
            let f = 0.5 + (rng.next() % 1000) as f64 / 2000.0;
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
    let s_w = x.magnitude_bits.div_ceil(x.cell_bits);
    let s_x = x.input_bits.div_ceil(x.dac_bits);
    let signs: Vec<(i64, Vec<i64>)> = match x.encoding {
        Encoding::Differential => vec![
            (1, w.iter().map(|&w| w.max(0)).collect()),
            (-1, w.iter().map(|&w| (-w).max(0)).collect()),
        ],
        Encoding::Offset => {
            vec![(1, w.iter().map(|&w| w + (1i64 << (x.weight_bits - 1))).collect())]
        }
    };
    let step = 1i64 << e;
    let top_code = (1i64 << x.adc_bits) - 1;
    let adc = |p: i64| -> (i64, bool) {
        let code = (p + step / 2).div_euclid(step);
        (step * code.clamp(0, top_code), code > top_code)
    };
    let mut acc = 0i64;
    let tiles = k.div_ceil(x.rows);
    for t in 0..tiles {
        let rows = t * x.rows..((t + 1) * x.rows).min(k);
        for i in 0..s_x {
            for j in 0..s_w {
                for (sign, u) in &signs {
                    let mut p = 0i64;
                    for kk in rows.clone() {
                        let x_i = (v[kk] >> (i * x.dac_bits)) % (1 << x.dac_bits);
                        let u_j = (u[kk] >> (j * x.cell_bits)) % (1 << x.cell_bits);
                        p += x_i * u_j;
                    }
                    let (a, clipped) = adc(p);
                    st.hist[p as usize] += 1;
                    st.conversions += 1;
                    st.clipped += clipped as u64;
                    acc += sign * (a << (i * x.dac_bits + j * x.cell_bits));
                }
            }
        }
    }
    if x.encoding == Encoding::Offset {
        acc -= (1i64 << (x.weight_bits - 1)) * v.iter().sum::<i64>();
    }
    acc
}

fn new_ref_stats(x: &Crossbar) -> RefStats {
    let p_max = x.rows as u64 * ((1 << x.dac_bits) - 1) * ((1 << x.cell_bits) - 1);
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
        let p = params(&mut rng, m, c.mg);
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
        exact.adc_bits = 16;
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
    fn gemm_matches_reference_crossbar(rows in 1usize..4, k in 1usize..150, n in 1usize..12, seed: u64) {
        let mut rng = Rng(seed);
        let p = params(&mut rng, n, n);
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
        exact.adc_bits = 16;
        exact.adc_step = vec![0];
        let plain = ProgramRunner::new(&with_crossbar(&program, None)).unwrap().run(vec![tensor(&[rows, k], x.clone())]).unwrap();
        let lossless = ProgramRunner::new(&with_crossbar(&program, Some(exact))).unwrap();
        let mut stats = AdcStats::default();
        let slow = lossless.run_with_adc_stats(vec![tensor(&[rows, k], x.clone())], &mut stats).unwrap();
        prop_assert_eq!(codes(&lossless.run(vec![tensor(&[rows, k], x)]).unwrap()[0]), codes(&plain[0]));
        prop_assert_eq!(codes(&slow[0]), codes(&plain[0]));
    }
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
        encoding: Encoding::Differential,
        rows: 128,
        cols: 128,
        cell_bits: 2,
        dac_bits: 1,
        adc_bits: 8,
        weight_bits: 8,
        magnitude_bits: 7,
        input_bits: ct.bits as u32,
        input_min: ct.range().0,
        adc_step: vec![1],
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
    let time = |p: &Program, reps: usize| {
        let r = ProgramRunner::new(p).unwrap();
        r.run(vec![image(0)]).unwrap();
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
    let t_prep = std::time::Instant::now();
    ProgramRunner::new(&full).unwrap();
    eprintln!("prepare: {:.3} s", t_prep.elapsed().as_secs_f64());
    let t_exact = time(&exact, 5);
    let t_full = time(&full, 5);
    eprintln!("exact program: {t_exact:.3} s/image; crossbar program: {t_full:.3} s/image");
    if std::env::var("CIMC_BENCH_LAYERS").is_ok() {
        for (i, s) in exact.steps.iter().enumerate() {
            if matches!(s, Step::Conv { .. } | Step::Gemm { .. }) {
                let t = time(&with_crossbar(Some(i)), 3);
                eprintln!("step {i:2} {:40} {:.3} s", exact.origins[i], t - t_exact);
            }
        }
    }
}
