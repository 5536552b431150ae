//! Property tests of the program's element-wise integer steps — lookup tables (`Lut`), `Sub`,
//! `Mul`, `Div` of two activations and `IntSoftmax` — against naive references written here in
//! f64 from the real values of the codes (`docs/hardware-model.md` §4): each step, lowered from a
//! quantized graph by `lower` and run by the program runner, gives a nearest output code of the
//! exact real result (within the bound the page states for the step), numpy broadcasting
//! included.

use cimc_backends::program::lower::lower;
use cimc_backends::program::{Step, DIV_SHIFT};
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

mod code_params;
use code_params::{check_nearest, quant, Q};

/// Codes of `q`'s type, `n` of them, from a seed (every code of small types appears).
fn codes(q: &Q, n: usize, seed: u64) -> Vec<i32> {
    let (lo, hi) = q.range();
    let span = (hi - lo + 1) as u64;
    let mut s = seed | 1;
    (0..n)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if k < span as usize {
                lo + k as i32
            } else {
                lo + (s % span) as i32
            }
        })
        .collect()
}

fn tensor(shape: &[usize], v: Vec<i32>) -> Tensor {
    Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
}

/// Lowers `text` (one node between code inputs and a code output), runs it and returns the
/// output codes and the program.
fn run(text: &str, inputs: Vec<Tensor>) -> (Vec<i32>, cimc_backends::program::Program) {
    let g = cimc_ir::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let p = lower(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let out = ProgramRunner::new(&p).unwrap().run(inputs).unwrap();
    let Tensor::I32(a) = &out[0] else { panic!("codes expected") };
    (a.iter().copied().collect(), p)
}

/// The shapes of a broadcasting binary op: `a` full, `b` full or `[N, C, 1, 1]` (squeeze-excite)
/// or a scalar.
fn binary_shapes(kind: u8) -> (Vec<usize>, Vec<usize>) {
    match kind % 3 {
        0 => (vec![2, 3, 4, 5], vec![2, 3, 4, 5]),
        1 => (vec![2, 3, 4, 5], vec![2, 3, 1, 1]),
        _ => (vec![2, 3, 4, 5], vec![1]),
    }
}

fn binary_text(op: &str, qa: &Q, qb: &Q, qy: &Q, sa: &[usize], sb: &[usize]) -> String {
    format!(
        "graph t {{\n  input %a : {}\n  input %b : {}\n  %y : {} = {op}(%a, %b) \"n\"\n  output %y\n}}\n",
        qa.ty(sa),
        qb.ty(sb),
        qy.ty(sa)
    )
}

/// The `b` element paired with output element `k` under broadcasting.
fn b_index(k: usize, sa: &[usize], sb: &[usize]) -> usize {
    match sb.len() {
        1 => 0,
        _ if sb == sa => k,
        _ => k / (sa[2] * sa[3]),
    }
}

fn binary_case(
    op: &str,
    (qa, qb, qy): (Q, Q, Q),
    kind: u8,
    seed: u64,
    f: impl Fn(f64, f64) -> f64,
    tol: impl Fn(i32, i32) -> f64,
) {
    let (sa, sb) = binary_shapes(kind);
    let na: usize = sa.iter().product();
    let nb: usize = sb.iter().product();
    let (xa, xb) = (codes(&qa, na, seed), codes(&qb, nb, seed.rotate_left(17)));
    let text = binary_text(op, &qa, &qb, &qy, &sa, &sb);
    let (y, _) = run(&text, vec![tensor(&sa, xa.clone()), tensor(&sb, xb.clone())]);
    for k in 0..na {
        let (ca, cb) = (xa[k], xb[b_index(k, &sa, &sb)]);
        let want = f(qa.real(ca), qb.real(cb));
        check_nearest(y[k], want, &qy, tol(ca, cb), &format!("{op} {ca}, {cb}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mul_is_the_rounded_product(qa in quant(-12..4), qb in quant(-12..4), qy in quant(-12..4), kind in 0u8..3, seed in any::<u64>()) {
        // The multiplier's 31 bits: a relative error of 2^-31 of the product in codes.
        let m = qa.scale as f64 * qb.scale as f64 / qy.scale as f64;
        let tol = move |a: i32, b: i32| {
            ((a - qa.zp) as f64 * (b - qb.zp) as f64 * m).abs() * 2f64.powi(-30) + 1e-9
        };
        binary_case("mul", (qa, qb, qy), kind, seed, |a, b| a * b, tol);
    }

    #[test]
    fn sub_is_the_rounded_difference(qa in quant(-12..4), qb in quant(-12..4), qy in quant(-12..4), kind in 0u8..3, seed in any::<u64>()) {
        // The Add recipe: each operand's rescaling rounds to 2^-20 of the larger scale.
        let sc = qa.scale.max(qb.scale) as f64;
        let tol = move |_: i32, _: i32| 2.0 * 2f64.powi(-20) * sc / qy.scale as f64 + 1e-6;
        binary_case("sub", (qa, qb, qy), kind, seed, |a, b| a - b, tol);
    }

    #[test]
    fn div_is_the_rounded_quotient(qa in quant(-12..4), qb in quant(-12..4), qy in quant(-12..4), kind in 0u8..3, seed in any::<u64>()) {
        // The reciprocal's rounding, 1/2 in 2^DIV_SHIFT, times |q_a − z_a|, in output codes.
        let m = qa.scale as f64 / (qb.scale as f64 * qy.scale as f64);
        let tol = move |a: i32, _: i32| {
            ((a - qa.zp) as f64).abs() * m * (0.5 + 1e-3) / (1u64 << DIV_SHIFT) as f64 + 1e-6
        };
        // Division by a real 0: the float quotient ±∞ (or NaN for 0/0) quantized.
        let f = |a: f64, b: f64| if b == 0.0 {
            if a > 0.0 { f64::INFINITY } else if a < 0.0 { f64::NEG_INFINITY } else { 0.0 }
        } else { a / b };
        binary_case("div", (qa, qb, qy), kind, seed, f, tol);
    }

    #[test]
    fn tables_are_the_function_rounded_once(qx in quant(-12..4), qy in quant(-12..4), which in 0usize..10, seed in any::<u64>()) {
        let (op, f): (&str, fn(f64) -> f64) = [
            ("sigmoid", (|x: f64| 1.0 / (1.0 + (-x).exp())) as fn(f64) -> f64),
            ("tanh", |x: f64| x.tanh()),
            ("hard_swish", |x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
            ("hard_sigmoid {alpha=0.2, beta=0.5}", |x: f64| (0.2 * x + 0.5).clamp(0.0, 1.0)),
            ("leaky_relu {alpha=0.1}", |x: f64| if x < 0.0 { 0.1 * x } else { x }),
            ("exp", |x: f64| x.exp()),
            ("erf", erf),
            ("selu {alpha=1.6732632, gamma=1.050701}", |x: f64| {
                1.050701 * if x > 0.0 { x } else { 1.6732632 * (x.exp() - 1.0) }
            }),
            // The integer GELU of a transformer is this table: the nearest output code of
            // GELU at every input code (within the f32 evaluation's last bits), the best an
            // 8-bit output can be (docs/hardware-model.md §4, "Lookup tables").
            ("gelu {tanh=false}", |x: f64| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
            ("gelu {tanh=true}", |x: f64| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }),
        ][which];
        let (name, attrs) = op.split_once(' ').unwrap_or((op, ""));
        let shape = [2usize, 3, 7, 7];
        let n: usize = shape.iter().product();
        let x = codes(&qx, n, seed);
        let text = format!(
            "graph t {{\n  input %x : {}\n  %y : {} = {name}(%x) {attrs} \"n\"\n  output %y\n}}\n",
            qx.ty(&shape),
            qy.ty(&shape)
        );
        let (y, p) = run(&text, vec![tensor(&shape, x.clone())]);
        prop_assert!(matches!(p.steps[0], Step::Lut { .. }), "a table expected");
        for (k, &q) in x.iter().enumerate() {
            // The table evaluates the function in f32: allow its last bits.
            let want = f(qx.real(q));
            let tol = 1e-5 * (want / qy.scale as f64).abs() + 1e-4;
            check_nearest(y[k], want, &qy, tol, &format!("{name}({q})"));
        }
    }

    #[test]
    fn scalar_operands_make_tables(qx in quant(-12..4), qy in quant(-12..4), c in -4.0f32..4.0, which in 0usize..5, seed in any::<u64>()) {
        let c = if c == 0.0 { 0.5 } else { c };
        let (text_of, f): (fn(&str) -> String, fn(f64, f64) -> f64) = [
            ((|x: &str| format!("add(%x, {x})")) as fn(&str) -> String, (|a: f64, b: f64| a + b) as fn(f64, f64) -> f64),
            (|x| format!("sub({x}, %x)"), |a, b| b - a),
            (|x| format!("mul(%x, {x})"), |a, b| a * b),
            (|x| format!("div(%x, {x})"), |a, b| a / b),
            (|x| format!("pow(%x, {x})"), |a, b| a.powf(b)),
        ][which];
        let c = if which == 4 { 2.0 } else { c };
        let shape = [1usize, 4, 6];
        let x = codes(&qx, 24, seed);
        let text = format!(
            "graph t {{\n  input %x : {}\n  const @c : f32[] = [{c:?}]\n  %y : {} = {} \"n\"\n  output %y\n}}\n",
            qx.ty(&shape),
            qy.ty(&shape),
            text_of("@c")
        );
        let (y, p) = run(&text, vec![tensor(&shape, x.clone())]);
        prop_assert!(matches!(p.steps[0], Step::Lut { .. }), "a table expected");
        for (k, &q) in x.iter().enumerate() {
            let want = f(qx.real(q), c as f64);
            let tol = 1e-5 * (want / qy.scale as f64).abs() + 1e-4;
            check_nearest(y[k], want, &qy, tol, &format!("{which}: {q} with {c}"));
        }
    }

    #[test]
    fn softmax_on_codes_holds_its_bound(qx in quant(-12..4), out_bits in 4u8..=8, n in 2usize..40, axis in 0usize..2, seed in any::<u64>()) {
        // The output covers [0, 1], as calibration of a softmax gives it.
        let qy = Q { bits: out_bits, signed: false, scale: 1.0 / ((1u32 << out_bits) - 1) as f32, zp: 0 };
        let shape = if axis == 0 { vec![n, 3] } else { vec![3, n] };
        let x = codes(&qx, 3 * n, seed);
        let text = format!(
            "graph t {{\n  input %x : {}\n  %y : {} = softmax(%x) {{axis={axis}, coerce_2d=false}} \"n\"\n  output %y\n}}\n",
            qx.ty(&shape),
            qy.ty(&shape)
        );
        let (y, p) = run(&text, vec![tensor(&shape, x.clone())]);
        prop_assert!(matches!(p.steps[0], Step::IntSoftmax { .. }), "a softmax on codes expected");
        let at = |row: usize, k: usize| if axis == 0 { k * 3 + row } else { row * n + k };
        for row in 0..3 {
            let xs: Vec<f64> = (0..n).map(|k| qx.real(x[at(row, k)])).collect();
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = xs.iter().map(|v| (v - max).exp()).sum();
            for k in 0..n {
                let p = (xs[k] - max).exp() / sum;
                let got = qy.scale as f64 * (y[at(row, k)] - qy.zp) as f64;
                // docs/hardware-model.md §4: |got − p| ≤ s_y/2 + (n + 2)·2^-31.
                let bound = qy.scale as f64 / 2.0 + (n as f64 + 2.0) * 2f64.powi(-31);
                prop_assert!((got - p).abs() <= bound * (1.0 + 1e-9),
                    "row {row} k {k}: got {got}, softmax {p}, bound {bound}");
            }
        }
    }
}

/// The error function (Abramowitz–Stegun 7.1.26 is too coarse; a series and a continued
/// fraction, to 1e-15).
fn erf(x: f64) -> f64 {
    if x.abs() < 3.0 {
        // Maclaurin series.
        let mut sum = x;
        let mut term = x;
        let mut k = 0.0;
        loop {
            k += 1.0;
            term *= -x * x / k;
            let add = term / (2.0 * k + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction of erfc.
        let z = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = k as f64 / 2.0 / (z + f);
        }
        let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f);
        x.signum() * (1.0 - erfc)
    }
}

/// The exit-1 rule for a divisor of real 0, for every dividend sign.
#[test]
fn division_by_zero_saturates_by_sign() {
    let q = Q { bits: 8, signed: true, scale: 0.1, zp: 0 };
    let y = Q { bits: 8, signed: false, scale: 0.1, zp: 10 };
    let text = binary_text("div", &q, &q, &y, &[3], &[3]);
    let (got, _) = run(&text, vec![tensor(&[3], vec![5, -5, 0]), tensor(&[3], vec![0, 0, 0])]);
    assert_eq!(got, vec![255, 0, 10]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// `Sub` through the stream (`requant` negating `b` about its zero point, then `add`)
    /// computes the program's codes bit for bit, graph inputs quantized on the host included.
    #[test]
    fn sub_streams_as_the_program_computes_it(qa in quant(-12..4), qb in quant(-12..4), qy in quant(-12..4), seed in any::<u64>()) {
        let shape = [2usize, 3, 4, 5];
        let text = binary_text("sub", &qa, &qb, &qy, &shape, &shape);
        let g = cimc_ir::parse(&text).unwrap();
        let p = lower(&g).unwrap();
        let target = cimc_backends::target::Target::preset("isaac").unwrap();
        let s = cimc_backends::stream::emit::emit(&p, &target, &Default::default()).unwrap();
        let s = cimc_backends::stream::Stream::from_bytes(&s.to_bytes()).unwrap();
        let n: usize = shape.iter().product();
        let inputs = vec![
            tensor(&shape, codes(&qa, n, seed)),
            tensor(&shape, codes(&qb, n, seed.rotate_left(9))),
        ];
        let want = ProgramRunner::new(&p).unwrap().run(inputs.clone()).unwrap();
        let got = cimc_sim::StreamRunner::new(&s).unwrap().run(inputs).unwrap();
        let (Tensor::I32(w), Tensor::I32(g)) = (&want[0], &got[0]) else { panic!("codes expected") };
        prop_assert_eq!(w, g);
    }
}
