//! Property tests of the program's steps with two inputs of their own shapes: `MatMulCodes` (a
//! MatMul of two activations, onnxruntime's QLinearMatMul arithmetic, batch axes broadcast as
//! ONNX MatMul's) against a naive reference written here — the accumulator
//! `Σ_k (q_a − z_a)(q_b − z_b)` of every output element by three loops over explicit indices,
//! requantized with the step's own `Requant`, and within one output code of the exact real
//! product — and `GatherRows` (an embedding: a constant table's rows by integer indices) against
//! the table quantized element by element.

use cimc_backends::program::lower::lower;
use cimc_backends::program::Step;
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
struct Q {
    signed: bool,
    scale: f32,
    zp: i32,
}

impl Q {
    fn range(&self) -> (i32, i32) {
        cimc_backends::arith::code_range(8, self.signed)
    }

    fn ty(&self, shape: &[usize]) -> String {
        let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let (dt, sg) = if self.signed { ("i8", "signed") } else { ("u8", "unsigned") };
        format!("{dt}[{dims}] q(bits=8, {sg}, scale=[{:?}], zp=[{}])", self.scale, self.zp)
    }
}

fn quant() -> impl Strategy<Value = Q> {
    (any::<bool>(), -8i32..2, 0u32..1000, 0i32..256).prop_map(|(signed, e, frac, z)| Q {
        signed,
        scale: 2f32.powi(e) * (1.0 + frac as f32 / 1000.0),
        zp: if signed { 0 } else { z },
    })
}

fn codes(q: &Q, n: usize, seed: u64) -> Vec<i32> {
    let (lo, hi) = q.range();
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (s % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

fn tensor(shape: &[usize], v: Vec<i32>) -> Tensor {
    Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
}

/// Operand and output shapes of MatMul: batched, broadcast batch axes, and 1-D operands.
fn shapes(kind: u8, m: usize, k: usize, n: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    match kind % 6 {
        0 => (vec![m, k], vec![k, n], vec![m, n]),
        1 => (vec![2, 3, m, k], vec![2, 3, k, n], vec![2, 3, m, n]),
        2 => (vec![2, 1, m, k], vec![3, k, n], vec![2, 3, m, n]),
        3 => (vec![3, m, k], vec![k, n], vec![3, m, n]),
        4 => (vec![k], vec![2, k, n], vec![2, n]),
        _ => (vec![2, m, k], vec![k], vec![2, m]),
    }
}

/// Row-major offset of `idx` in `shape`, broadcast: an axis of size 1 reads index 0, and the
/// leading axes `shape` lacks are dropped.
fn offset(shape: &[usize], idx: &[usize]) -> usize {
    let pad = idx.len() - shape.len();
    shape.iter().zip(&idx[pad..]).fold(0, |o, (&d, &i)| o * d + if d == 1 { 0 } else { i })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matmul_of_two_activations_is_qlinearmatmul(
        qa in quant(), qb in quant(), qy in quant(), kind in 0u8..6,
        m in 1usize..5, k in 1usize..40, n in 1usize..5, seed in any::<u64>(),
    ) {
        let (sa, sb, so) = shapes(kind, m, k, n);
        let text = format!(
            "graph t {{\n  input %a : {}\n  input %b : {}\n  %y : {} = matmul(%a, %b) \"n\"\n  output %y\n}}\n",
            qa.ty(&sa), qb.ty(&sb), qy.ty(&so)
        );
        let g = cimc_ir::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let p = lower(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Step::MatMulCodes { requant, .. } = &p.steps[0] else { panic!("{:?}", p.steps[0]) };
        let xa = codes(&qa, sa.iter().product(), seed);
        let xb = codes(&qb, sb.iter().product(), seed ^ 0x9e37_79b9);
        let out = ProgramRunner::new(&p)
            .unwrap()
            .run(vec![tensor(&sa, xa.clone()), tensor(&sb, xb.clone())])
            .unwrap();
        let Tensor::I32(got) = &out[0] else { panic!("codes expected") };
        prop_assert_eq!(got.shape(), &so[..]);
        // Both operands as matrices with the output's batch axes in front.
        let a2: Vec<usize> = if sa.len() == 1 { vec![1, sa[0]] } else { sa.clone() };
        let b2: Vec<usize> = if sb.len() == 1 { vec![sb[0], 1] } else { sb.clone() };
        let o2: Vec<usize> = match (sa.len(), sb.len()) {
            (1, _) => [&so[..so.len() - 1], &[1], &so[so.len() - 1..]].concat(),
            (_, 1) => [&so[..], &[1]].concat(),
            _ => so.clone(),
        };
        let rank = o2.len();
        let (lo, hi) = qy.range();
        for (e, &y) in got.iter().enumerate() {
            let mut idx = vec![0; rank];
            let mut r = e;
            for d in (0..rank).rev() {
                idx[d] = r % o2[d];
                r /= o2[d];
            }
            let (i, j) = (idx[rank - 2], idx[rank - 1]);
            let mut acc = 0i64;
            let mut real = 0f64;
            for l in 0..k {
                let mut ia = idx.clone();
                (ia[rank - 2], ia[rank - 1]) = (i, l);
                let mut ib = idx.clone();
                (ib[rank - 2], ib[rank - 1]) = (l, j);
                let ca = (xa[offset(&a2, &ia)] - qa.zp) as i64;
                let cb = (xb[offset(&b2, &ib)] - qb.zp) as i64;
                acc += ca * cb;
                real += qa.scale as f64 * ca as f64 * qb.scale as f64 * cb as f64;
            }
            prop_assert_eq!(y, requant.apply(acc, 0), "element {}", e);
            // The multiplier's 31 bits: a relative error of 2^-31 of the product in codes.
            let exact = (real / qy.scale as f64 + qy.zp as f64).clamp(lo as f64, hi as f64);
            let tol = 0.5 + (real / qy.scale as f64).abs() * 2f64.powi(-30) + 1e-9;
            prop_assert!((y as f64 - exact).abs() <= tol, "element {e}: {y} vs exact {exact}");
        }
    }
}

#[test]
fn gather_of_a_constant_table_picks_its_quantized_rows() {
    let table = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0, -2.0];
    let text = format!(
        "graph t {{\n  const @emb : f32[4,2] = {table:?}\n  input %ids : i64[2,3]\n  \
         %y : i8[2,3,2] q(bits=8, signed, scale=[0.03], zp=[0]) = gather(@emb, %ids) {{axis=0}} \"g\"\n  \
         output %y\n}}\n"
    );
    let g = cimc_ir::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let p = lower(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(matches!(p.steps[0], Step::GatherRows { rows: 4, .. }), "{:?}", p.steps[0]);
    let ids = vec![3i64, 0, -1, 2, 1, -4];
    let runner = ProgramRunner::new(&p).unwrap();
    let input = Tensor::from_i64(&[2, 3], ids.clone()).unwrap();
    let out = runner.run(vec![input]).unwrap();
    let Tensor::I32(got) = &out[0] else { panic!("codes expected") };
    let q = |v: f32| cimc_backends::arith::quantize_value(v, 0.03, 0, -128, 127);
    let want: Vec<i32> = ids
        .iter()
        .flat_map(|&i| {
            let r = if i < 0 { i + 4 } else { i } as usize;
            [q(table[2 * r]), q(table[2 * r + 1])]
        })
        .collect();
    assert_eq!(got.iter().copied().collect::<Vec<_>>(), want);
    // An index outside [-4, 4) is an error naming it, not a panic.
    let bad = Tensor::from_i64(&[2, 3], vec![0, 1, 2, 3, 4, 0]).unwrap();
    let err = runner.run(vec![bad]).unwrap_err().to_string();
    assert!(err.contains("index 4 outside"), "{err}");
}
