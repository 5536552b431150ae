//! Property tests of the program steps of functions of an activation and constants of several
//! values (`LutPerElement`), of LRN (`Lrn`) and of InstanceNormalization (`Normalize`), against
//! naive references written here in f64 from the real values of the codes: each step, lowered
//! from a quantized graph by `lower` and run by the program runner, gives a nearest output code
//! of the exact real result (the tables evaluate the op in f32, so within its last bits; the
//! LRN and the normalization from exact integer sums in f64, so within 1e-9 of a code).

use cimc_backends::program::lower::lower;
use cimc_backends::program::Step;
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

mod code_params;
use code_params::{check_nearest, quant, Q};

/// A xorshift stream from `seed`.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Codes of `q`'s type, `n` of them, from a seed.
fn codes(q: &Q, n: usize, seed: u64) -> Vec<i32> {
    let (lo, hi) = q.range();
    let span = (hi - lo + 1) as u64;
    let mut next = stream(seed);
    (0..n).map(|_| lo + (next() % span) as i32).collect()
}

/// `n` reals in `[lo, hi)` from a seed, as f32.
fn reals(n: usize, (lo, hi): (f32, f32), seed: u64) -> Vec<f32> {
    let mut next = stream(seed);
    (0..n).map(|_| lo + (hi - lo) * (next() % 10_000) as f32 / 10_000.0).collect()
}

/// A shape in the text IR (`[2,3,4]`).
fn dims(shape: &[usize]) -> String {
    format!("{shape:?}").replace(' ', "")
}

/// Lowers `text` (one node between a code input and a code output), runs it and returns the
/// output codes and the program.
fn run(text: &str, shape: &[usize], x: &[i32]) -> (Vec<i32>, cimc_backends::program::Program) {
    let g = cimc_ir::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let p = lower(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let input = Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), x.to_vec()).unwrap());
    let out = ProgramRunner::new(&p).unwrap().run(vec![input]).unwrap();
    let Tensor::I32(a) = &out[0] else { panic!("codes expected") };
    (a.iter().copied().collect(), p)
}

/// The element of a tensor of shape `from` that output element `k` of shape `to` broadcasts
/// from (numpy rules), naively: the output's multi-index, each axis of size 1 read at 0.
fn broadcast_from(k: usize, from: &[usize], to: &[usize]) -> usize {
    let mut rest = k;
    let mut index = vec![0; to.len()];
    for d in (0..to.len()).rev() {
        index[d] = rest % to[d];
        rest /= to[d];
    }
    let pad = to.len() - from.len();
    from.iter().enumerate().fold(0, |at, (d, &n)| at * n + if n == 1 { 0 } else { index[d + pad] })
}

/// (activation shape, constant shape, output shape): per channel as onnx-caffe2 and Brevitas
/// write it, along the last axis, over the spatial axes, in full, and an activation that
/// broadcasts too.
fn const_shapes(kind: u8) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    match kind % 6 {
        0 => (vec![2, 3, 4, 5], vec![3, 1, 1], vec![2, 3, 4, 5]),
        1 => (vec![2, 3, 4, 5], vec![1, 3, 1, 1], vec![2, 3, 4, 5]),
        2 => (vec![2, 3, 4, 5], vec![5], vec![2, 3, 4, 5]),
        3 => (vec![2, 3, 4, 5], vec![4, 5], vec![2, 3, 4, 5]),
        4 => (vec![1, 3, 2, 2], vec![1, 3, 2, 2], vec![1, 3, 2, 2]),
        _ => (vec![2, 3, 1, 5], vec![1, 1, 4, 1], vec![2, 3, 4, 5]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn constants_of_several_values_make_one_table_per_element(
        qx in quant(-8..2), qy in quant(-8..2), which in 0usize..6, kind in 0u8..6, seed in any::<u64>()
    ) {
        let (text_of, f): (fn(&str) -> String, fn(f64, f64) -> f64) = [
            ((|c: &str| format!("mul(%x, {c})")) as fn(&str) -> String, (|a: f64, b: f64| a * b) as fn(f64, f64) -> f64),
            (|c| format!("add({c}, %x)"), |a, b| a + b),
            (|c| format!("sub({c}, %x)"), |a, b| b - a),
            (|c| format!("div(%x, {c})"), |a, b| a / b),
            (|c| format!("pow(%x, {c})"), |a, b| a.powf(b)),
            (|c| format!("prelu(%x, {c})"), |a, b| if a < 0.0 { a * b } else { a }),
        ][which];
        let (sx, sc, so) = const_shapes(kind);
        // PRelu's slope broadcasts to the input: no activation that broadcasts itself.
        let (sx, so) = if which == 5 && sx != so { (so.clone(), so) } else { (sx, so) };
        let nc: usize = sc.iter().product();
        let c: Vec<f32> = if which == 4 {
            // Integer exponents: a negative base has a real power.
            (0..nc).map(|k| [1.0, 2.0, 3.0][k % 3]).collect()
        } else {
            reals(nc, (-3.0, 3.0), seed.rotate_left(9)).into_iter()
                .map(|v| if v.abs() < 0.1 { 0.5 } else { v }).collect()
        };
        let nx: usize = sx.iter().product();
        let x = codes(&qx, nx, seed);
        let text = format!(
            "graph t {{\n  input %x : {}\n  const @c : f32{} = {c:?}\n  %y : {} = {} \"n\"\n  output %y\n}}\n",
            qx.ty(&sx), dims(&sc), qy.ty(&so), text_of("@c")
        );
        let (y, p) = run(&text, &sx, &x);
        prop_assert!(
            matches!(p.steps[0], Step::LutPerElement { .. } | Step::Lut { .. }),
            "tables expected"
        );
        for (k, &got) in y.iter().enumerate() {
            let q = x[broadcast_from(k, &sx, &so)];
            let cv = c[broadcast_from(k, &sc, &so)] as f64;
            let want = f(qx.real(q), cv);
            // The table evaluates the op in f32: allow its last bits.
            let tol = 1e-5 * (want / qy.scale as f64).abs() + 1e-4;
            check_nearest(got, want, &qy, tol, &format!("{which}: code {q} with {cv} at {k}"));
        }
    }

    #[test]
    fn lrn_is_the_float_lrn_rounded_once(
        qx in quant(-8..2), qy in quant(-8..2), c in 1usize..9, size in 1usize..7,
        alpha in 1e-4f32..2.0, beta in 0.1f32..1.0, bias in 0.5f32..2.0, seed in any::<u64>()
    ) {
        let shape = [2usize, c, 3, 2];
        let n: usize = shape.iter().product();
        let x = codes(&qx, n, seed);
        let text = format!(
            "graph t {{\n  input %x : {}\n  %y : {} = lrn(%x) {{size={size}, alpha={alpha:?}, beta={beta:?}, bias={bias:?}}} \"n\"\n  output %y\n}}\n",
            qx.ty(&shape), qy.ty(&shape)
        );
        let (y, p) = run(&text, &shape, &x);
        prop_assert!(matches!(p.steps[0], Step::Lrn { .. }), "an LRN step expected");
        let inner = 6;
        let (before, after) = ((size - 1) / 2, (size - 1).div_ceil(2));
        for (k, &got) in y.iter().enumerate() {
            let (b, ch, pos) = (k / (c * inner), k / inner % c, k % inner);
            let at = |j: usize| qx.real(x[(b * c + j) * inner + pos]);
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            let sq: f64 = (lo..=hi).map(|j| at(j) * at(j)).sum();
            let want = at(ch) / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
            check_nearest(got, want, &qy, 1e-9 * (1.0 + (want / qy.scale as f64).abs()), &format!("lrn at {k}"));
        }
    }

    #[test]
    fn instance_norm_is_the_float_normalization_rounded_once(
        qx in quant(-8..2), qy in quant(-8..2), c in 1usize..5, h in 1usize..6, eps in 1e-6f32..1e-2, seed in any::<u64>()
    ) {
        let shape = [2usize, c, h, 3];
        let n: usize = shape.iter().product();
        let x = codes(&qx, n, seed);
        let gamma = reals(c, (-2.0, 2.0), seed.rotate_left(5));
        let beta = reals(c, (-1.0, 1.0), seed.rotate_left(11));
        let text = format!(
            "graph t {{\n  input %x : {}\n  const @g : f32[{c}] = {gamma:?}\n  const @b : f32[{c}] = {beta:?}\n  %y : {} = instance_norm(%x, @g, @b) {{epsilon={eps:?}}} \"n\"\n  output %y\n}}\n",
            qx.ty(&shape), qy.ty(&shape)
        );
        let (y, p) = run(&text, &shape, &x);
        prop_assert!(matches!(p.steps[0], Step::Normalize { .. }), "a normalization expected");
        let inner = h * 3;
        for (group, (xs, ys)) in x.chunks(inner).zip(y.chunks(inner)).enumerate() {
            let ch = group % c;
            let v: Vec<f64> = xs.iter().map(|&q| qx.real(q)).collect();
            let mean = v.iter().sum::<f64>() / inner as f64;
            let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / inner as f64;
            for (&a, &got) in v.iter().zip(ys) {
                let want = gamma[ch] as f64 * (a - mean) / (var + eps as f64).sqrt() + beta[ch] as f64;
                check_nearest(got, want, &qy, 1e-9 * (1.0 + (want / qy.scale as f64).abs()), &format!("group {group}"));
            }
        }
    }
}

/// A step's tables are capped: a 16-bit input divided by a constant of 256 values (2^24
/// entries) is refused naming the node, not run out of memory; the same product (a Mul) runs
/// instead as a product of two code tensors, the constant's codes made once.
#[test]
fn tables_beyond_the_cap_are_refused_naming_the_node() {
    let qx = Q { bits: 16, signed: true, scale: 0.01, zp: 0 };
    let c: Vec<f32> = (0..256).map(|k| k as f32 / 8.0 + 0.5).collect();
    let graph = |op: &str| {
        format!(
            "graph t {{\n  input %x : {}\n  const @c : f32[256] = {c:?}\n  %y : {} = {op}(%x, @c) \"wide_{op}\"\n  output %y\n}}\n",
            qx.ty(&[2, 256]),
            qx.ty(&[2, 256])
        )
    };
    let g = cimc_ir::parse(&graph("div")).unwrap();
    let e = lower(&g).unwrap_err().to_string();
    assert!(e.contains("wide_div") && e.contains("MiB"), "{e}");
    let p = lower(&cimc_ir::parse(&graph("mul")).unwrap()).expect("a Mul of the constant's codes");
    assert!(p.steps.iter().any(|s| matches!(s, Step::Mul { .. })));
}

/// Equal tables for every constant element, with an activation that broadcasts to the output
/// (`[2, 3, 1, 5]` times a `[4, 1]` constant of one value repeated): the step must still
/// broadcast, not become an element-wise `Lut` that writes too few values (found by the
/// property test above).
#[test]
fn equal_tables_keep_the_broadcast_of_the_activation() {
    let q = Q { bits: 8, signed: true, scale: 0.05, zp: 0 };
    let (sx, so) = ([2usize, 3, 1, 5], [2usize, 3, 4, 5]);
    let text = format!(
        "graph t {{\n  input %x : {}\n  const @c : f32[4,1] = [2.0, 2.0, 2.0, 2.0]\n  %y : {} = mul(%x, @c) \"n\"\n  output %y\n}}\n",
        q.ty(&sx),
        q.ty(&so)
    );
    let x: Vec<i32> = (0..30).map(|i| i - 15).collect();
    let (y, p) = run(&text, &sx, &x);
    assert!(matches!(p.steps[0], Step::LutPerElement { .. }), "{:?}", p.steps[0].name());
    assert_eq!(y.len(), 120);
    for (k, &got) in y.iter().enumerate() {
        let want = 2.0 * q.real(x[broadcast_from(k, &sx, &so)]);
        check_nearest(got, want, &q, 1e-4, &format!("element {k}"));
    }
}
