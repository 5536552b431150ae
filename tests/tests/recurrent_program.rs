//! LSTM, GRU and RNN compiled W8A8 (`unroll-recurrent`, then the usual pipeline): every weight
//! product is a matrix step, the program runs no float op, and its outputs agree with the float
//! model's — seq-first and batch-first inputs, one and two directions, on the digital path and
//! on isaac's crossbars.

use cimc_backends::program::{Program, Step};
use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Direction, Graph, Op, RecurrentAttrs, RnnAct, TensorData, TensorType};
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;

/// xorshift64*: uniform values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let u =
                    (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32 / (1u64 << 24) as f32;
                scale * (2.0 * u - 1.0)
            })
            .collect()
    }
}

const SEQ: usize = 6;
const BATCH: usize = 2;
const INPUT: usize = 4;
const HIDDEN: usize = 8;

/// One recurrent op with random weights and zero initial states, every output a graph output;
/// and its input.
fn model(
    op: fn(RecurrentAttrs) -> Op,
    gates: usize,
    acts: &[RnnAct],
    a: RecurrentAttrs,
) -> (Graph, Tensor) {
    let mut rng = Rng(7 + gates as u64);
    let dirs = a.num_directions();
    let lstm = gates == 4;
    let xs = if a.batch_first { vec![BATCH, SEQ, INPUT] } else { vec![SEQ, BATCH, INPUT] };
    let x =
        Tensor::from_data(&TensorData::from_f32(xs.clone(), &rng.vec(SEQ * BATCH * INPUT, 2.0)))
            .unwrap();
    let mut g = Graph::new("recurrent");
    let xv = g.add_input("x", TensorType::new(DType::F32, xs));
    let gh = gates * HIDDEN;
    let mut inputs = vec![
        xv,
        g.add_const(
            "w",
            TensorData::from_f32(vec![dirs, gh, INPUT], &rng.vec(dirs * gh * INPUT, 0.7)),
        ),
        g.add_const(
            "r",
            TensorData::from_f32(vec![dirs, gh, HIDDEN], &rng.vec(dirs * gh * HIDDEN, 0.7)),
        ),
        g.add_const("b", TensorData::from_f32(vec![dirs, 2 * gh], &rng.vec(dirs * 2 * gh, 0.3))),
    ];
    let state = if a.batch_first { vec![BATCH, dirs, HIDDEN] } else { vec![dirs, BATCH, HIDDEN] };
    let zeros = TensorData::from_f32(state.clone(), &vec![0.0; dirs * BATCH * HIDDEN]);
    inputs.push(g.add_const("h0", zeros.clone()));
    if lstm {
        inputs.push(g.add_const("c0", zeros));
    }
    let ys =
        if a.batch_first { vec![BATCH, SEQ, dirs, HIDDEN] } else { vec![SEQ, dirs, BATCH, HIDDEN] };
    let mut outs = vec![("y".to_string(), TensorType::new(DType::F32, ys))];
    outs.push(("y_h".into(), TensorType::new(DType::F32, state.clone())));
    if lstm {
        outs.push(("y_c".into(), TensorType::new(DType::F32, state)));
    }
    let mut a = a;
    a.activations = (0..dirs).flat_map(|_| acts.iter().copied()).collect();
    a.alphas = vec![0.0; a.activations.len()];
    a.betas = vec![0.0; a.activations.len()];
    let n = g.add_node("cell", op(a), inputs, outs);
    let o = g.node(n).outputs.clone();
    g.set_outputs(o);
    (g, x)
}

fn attrs(direction: Direction, batch_first: bool, linear_before_reset: bool) -> RecurrentAttrs {
    RecurrentAttrs {
        hidden: HIDDEN,
        direction,
        activations: vec![],
        alphas: vec![],
        betas: vec![],
        clip: None,
        batch_first,
        linear_before_reset,
        input_forget: false,
    }
}

/// Compiles W8A8, calibrated on the input itself (and mapped on `target`), runs the program and
/// returns its worst output error relative to the float model's largest magnitude.
fn program_error(name: &str, g: Graph, x: &Tensor, target: Option<&str>) -> (Program, f64) {
    let want = Runner::new(&g).unwrap().run(vec![x.clone()]).unwrap();
    let mut cx = PassContext { calib: Some(vec![x.clone()]), ..Default::default() };
    if let Some(t) = target {
        let t = cimc_backends::target::Target::resolve(t).unwrap();
        cx.chip = Some(cimc_passes::tile::Chip::from_target(&t, None));
    }
    let p = cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{name}: {e}")).0;
    let got = ProgramRunner::new(&p).unwrap().run(vec![x.clone()]).unwrap();
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(&want) {
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        let mag = w.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        let diff = g.iter().zip(&w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(diff / mag);
    }
    eprintln!("{name}: worst relative error {worst:.2e}");
    (p, worst)
}

/// `matrices`: the matrix steps the program should have.
fn check(name: &str, g: Graph, x: Tensor, matrices: usize) {
    let (p, err) = program_error(name, g.clone(), &x, None);
    let have = p.steps.iter().filter(|s| s.as_matrix().is_some()).count();
    assert_eq!(have, matrices, "{name}: matrix steps");
    assert!(
        p.steps.iter().any(|s| matches!(s, Step::Gather { .. })),
        "{name}: the time steps' slices"
    );
    assert!(err < 0.06, "{name}: the program differs from the float model by {err:.2e}");
    let (_, err) = program_error(name, g, &x, Some("isaac"));
    assert!(err < 0.06, "{name} on isaac: the program differs from the float model by {err:.2e}");
}

#[test]
fn lstm_seq_first_forward() {
    let acts = [RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh];
    let (g, x) = model(Op::Lstm, 4, &acts, attrs(Direction::Forward, false, false));
    // One input product per gate, and a recurrent product per gate from the second step on.
    check("lstm", g, x, 4 * SEQ);
}

#[test]
fn gru_bidi_batch_first_linear_before_reset() {
    let acts = [RnnAct::Sigmoid, RnnAct::Tanh];
    let (g, x) = model(Op::Gru, 3, &acts, attrs(Direction::Bidirectional, true, true));
    // Per direction as the LSTM's, and at the first step (zero state) `r ⊙ Rb_h` as a product
    // by a diagonal matrix.
    check("gru bidi", g, x, 2 * (3 * SEQ + 1));
}

#[test]
fn rnn_reverse() {
    let (g, x) = model(Op::Rnn, 1, &[RnnAct::Tanh], attrs(Direction::Reverse, false, false));
    check("rnn", g, x, SEQ);
}
