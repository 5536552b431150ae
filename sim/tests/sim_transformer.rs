//! The digital-unit instructions of the transformer steps against the program interpreter:
//! random programs of `GatherRows` (an embedding), `IntLayerNorm`, `Lut`, `Gather`, `Transpose`,
//! `MatMulCodes` (batched, both operands activations), `IntSoftmax`, `Mul` and `Reshape` are
//! emitted as streams (`gather_rows`, `layer_norm`, `lut`, `gather`, `transpose`, `matmul`,
//! `softmax`, `mul`), written to bytes, read back, printed as text and parsed back, and the
//! simulator's outputs equal the program's bit for bit; the cost report charges the products to
//! the digital matrix unit.

mod sim_common;

use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::lower::int_layer_norm_params;
use cimc_backends::program::{BufferDecl, CodeType, Elem, Program, Requant, Step};
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::stream::{cost, text, Stream};
use cimc_backends::target::Target;
use cimc_sim::{ProgramRunner, StreamRunner};
use sim_common::*;

/// Uniform in `0..n`.
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn code(bits: u8, signed: bool) -> Elem {
    Elem::Code(CodeType { bits, signed })
}

fn requant(rng: &mut Rng, lo: i32, hi: i32) -> Requant {
    let m = 2f64.powf(-(below(rng, 12) as f64) - 2.0) * (1.0 + below(rng, 1000) as f64 / 1000.0);
    Requant {
        mult: vec![FixedMultiplier::from_real(m).unwrap()],
        zero_point: (lo + hi) / 2,
        lo,
        hi,
    }
}

/// A random transformer-like program: tokens `[1, t]` → embedding `[1, t, d]` → LayerNorm →
/// GELU table → per head (`h` heads of `d/h`): Q = a slice (Gather), Kᵀ (Transpose), Q·Kᵀ
/// (MatMulCodes), softmax, ·V (MatMulCodes) → a product with the normalized input (Mul).
fn program(rng: &mut Rng) -> (Program, Vec<i32>) {
    let (t, h, dh) =
        (2 + below(rng, 6) as usize, 1 + below(rng, 3) as usize, 2 + below(rng, 4) as usize);
    let d = h * dh;
    let rows = 5 + below(rng, 20) as usize;
    let i8c = code(8, true);
    let mut bufs = vec![];
    let mut buf = |name: &str, shape: Vec<usize>, elem: Elem| {
        bufs.push(BufferDecl { name: name.into(), shape, elem, quant: None });
        bufs.len() - 1
    };
    let tok = buf("tokens", vec![1, t], code(32, true));
    let emb = buf("emb", vec![1, t, d], i8c);
    let ln = buf("ln", vec![1, t, d], i8c);
    let gelu = buf("gelu", vec![1, t, d], i8c);
    let heads = buf("heads", vec![1, t, h, dh], i8c);
    let q = buf("q", vec![1, h, t, dh], i8c);
    let kt = buf("kt", vec![1, h, dh, t], i8c);
    let s = buf("s", vec![1, h, t, t], i8c);
    let p = buf("p", vec![1, h, t, t], code(8, false));
    let o = buf("o", vec![1, h, t, dh], i8c);
    let o_flat = buf("o_flat", vec![1, t, d], i8c);
    let y = buf("y", vec![1, t, d], i8c);
    let table: Vec<i32> = (0..rows * d).map(|_| below(rng, 256) as i32 - 128).collect();
    let gamma: Vec<f32> = (0..d).map(|_| below(rng, 2000) as f32 / 1000.0 - 1.0).collect();
    let beta: Vec<f32> = (0..d).map(|_| below(rng, 2000) as f32 / 2000.0 - 0.5).collect();
    let (eps, g, b, rq) =
        int_layer_norm_params(d, (0.05, 0), (0.03, 0, -128, 127), 1e-5, (&gamma, &beta)).unwrap();
    let lut: Vec<i32> = (-128..128).map(|q: i32| (q.max(0) + q / 8).clamp(-128, 127)).collect();
    // The heads' view of GELU's output is the same words: a Reshape.
    let perm_q = vec![0, 2, 1, 3];
    // Kᵀ: [1, t, h, dh] → [1, h, dh, t] as a Gather of element numbers.
    let mut index = vec![];
    for hh in 0..h {
        for j in 0..dh {
            for tt in 0..t {
                index.push(((tt * h + hh) * dh + j) as u32);
            }
        }
    }
    let exp_table: Vec<i64> =
        (0..256).map(|d| ((1u64 << 30) as f64 * (-0.04 * d as f64).exp()).round() as i64).collect();
    let steps = vec![
        Step::GatherRows { indices: tok, output: emb, rows, table },
        Step::IntLayerNorm {
            input: emb,
            output: ln,
            axis: 2,
            input_zero_point: 0,
            epsilon_term: eps,
            gamma: g,
            beta: b,
            requant: rq,
        },
        Step::Lut { input: ln, output: gelu, input_min: -128, table: lut },
        Step::Reshape { input: gelu, output: heads },
        Step::Transpose { input: heads, output: q, perm: perm_q },
        Step::Gather { input: heads, output: kt, index },
        Step::MatMulCodes {
            a: q,
            b: kt,
            output: s,
            a_zero_point: 0,
            b_zero_point: 1,
            requant: requant(rng, -128, 127),
        },
        Step::IntSoftmax {
            input: s,
            output: p,
            axis: 3,
            exp_table,
            requant: Requant {
                mult: vec![FixedMultiplier::from_real(255.0 / 2f64.powi(32)).unwrap()],
                zero_point: 0,
                lo: 0,
                hi: 255,
            },
        },
        Step::MatMulCodes {
            a: p,
            b: q,
            output: o,
            a_zero_point: 0,
            b_zero_point: -2,
            requant: requant(rng, -128, 127),
        },
        Step::Transpose { input: o, output: o_flat, perm: vec![0, 2, 1, 3] },
        Step::Mul {
            a: o_flat,
            b: ln,
            output: y,
            a_zero_point: 0,
            b_zero_point: 3,
            requant: requant(rng, -128, 127),
        },
    ];
    let n = steps.len();
    let prog = Program {
        name: "tiny_transformer".into(),
        buffers: bufs,
        inputs: vec![tok],
        outputs: vec![y],
        steps,
        origins: (0..n).map(|i| format!("n{i}")).collect(),
        target: None,
    };
    let tokens = (0..t).map(|_| below(rng, 2 * rows as u64) as i32 - rows as i32).collect();
    (prog, tokens)
}

#[test]
fn transformer_steps_run_bit_exact_on_the_digital_units() {
    let target = Target::preset("isaac").unwrap();
    let mut rng = Rng(20);
    for case in 0..24 {
        let (p, tokens) = program(&mut rng);
        p.validate().unwrap_or_else(|e| panic!("case {case}: {e}"));
        let s = emit(&p, &target, &EmitOptions::default())
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        let bytes = s.to_bytes();
        assert_eq!(
            &bytes[8..12],
            &3u32.to_le_bytes(),
            "a stream with digital entries is version 3"
        );
        let back = Stream::from_bytes(&bytes).unwrap();
        assert_eq!(back, s, "case {case}: the file form round-trips");
        assert_eq!(
            text::parse(&text::print(&s)).unwrap(),
            s,
            "case {case}: the text form round-trips"
        );
        let shape = p.buffers[p.inputs[0]].shape.clone();
        let x = i32_tensor(&shape, tokens);
        let want = ProgramRunner::new(&p).unwrap().run(vec![x.clone()]).unwrap();
        let got = StreamRunner::new(&back).unwrap().run(vec![x]).unwrap();
        assert_eq!(codes(&got[0]), codes(&want[0]), "case {case}");
        let r = cost::estimate(&s, &target).unwrap();
        let b = r.totals.breakdown;
        assert!(r.totals.counts.digital_macs > 0 && r.totals.energy.digital_matrix > 0.0);
        assert_eq!(b.crossbar.energy_pj, 0.0, "no crossbar work");
        assert!(b.digital_matrix.energy_pj > 0.0 && b.vector.energy_pj > 0.0);
        let share = b.crossbar.energy_share
            + b.digital_matrix.energy_share
            + b.vector.energy_share
            + b.movement.energy_share
            + b.control.energy_share;
        assert!((share - 1.0).abs() < 1e-6, "shares sum to {share}");
    }
}

/// An index outside the embedding's rows is an error of the run, as in the program.
#[test]
fn an_index_outside_the_table_is_an_error() {
    let target = Target::preset("isaac").unwrap();
    let mut rng = Rng(7);
    let (p, mut tokens) = program(&mut rng);
    let rows = match &p.steps[0] {
        Step::GatherRows { rows, .. } => *rows as i32,
        _ => unreachable!(),
    };
    tokens[0] = rows;
    let s = emit(&p, &target, &EmitOptions::default()).unwrap();
    let x = i32_tensor(&p.buffers[p.inputs[0]].shape, tokens);
    let e = StreamRunner::new(&s).unwrap().run(vec![x.clone()]).unwrap_err().to_string();
    assert!(e.contains("outside"), "{e}");
    assert!(ProgramRunner::new(&p).unwrap().run(vec![x]).is_err());
}
