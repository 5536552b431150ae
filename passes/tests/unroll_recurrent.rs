//! `unroll-recurrent` against the recurrent ops it replaces: LSTM, GRU and RNN with random
//! weights, in every direction and layout, with zero, constant and input initial states, clip,
//! peepholes and the other activations, run by the float interpreter before and after the
//! pass (which computes the op in f64 and the unrolled graph op by op in f32): their outputs
//! agree to 1e-5 of their largest magnitude.

use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Direction, Graph, Op, RecurrentAttrs, RnnAct, TensorData, TensorType};
use cimc_passes::{pass_by_name, PassContext};

/// xorshift64*: uniform values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| scale * self.next()).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Lstm,
    Gru,
    Rnn,
}

/// How the initial states are given.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Init {
    Zero,
    Const,
    Input,
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    direction: Direction,
    init: Init,
    batch_first: bool,
    clip: Option<f32>,
    acts: Option<Vec<(RnnAct, f32, f32)>>,
    linear_before_reset: bool,
    input_forget: bool,
    peepholes: bool,
}

impl Case {
    fn new(kind: Kind, direction: Direction, init: Init) -> Case {
        Case {
            kind,
            direction,
            init,
            batch_first: false,
            clip: None,
            acts: None,
            linear_before_reset: false,
            input_forget: false,
            peepholes: false,
        }
    }
}

const SEQ: usize = 4;
const BATCH: usize = 2;
const INPUT: usize = 3;
const HIDDEN: usize = 5;

/// The graph of one recurrent op; its inputs' values (X, then the states when inputs).
fn build(c: &Case, rng: &mut Rng) -> (Graph, Vec<Tensor>) {
    let (gates, n_acts) = match c.kind {
        Kind::Lstm => (4, 3),
        Kind::Gru => (3, 2),
        Kind::Rnn => (1, 1),
    };
    let dirs = if c.direction == Direction::Bidirectional { 2 } else { 1 };
    let default: &[RnnAct] = match c.kind {
        Kind::Lstm => &[RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
        Kind::Gru => &[RnnAct::Sigmoid, RnnAct::Tanh],
        Kind::Rnn => &[RnnAct::Tanh],
    };
    let per_dir: Vec<(RnnAct, f32, f32)> =
        c.acts.clone().unwrap_or_else(|| default.iter().map(|&a| (a, 0.0, 0.0)).collect());
    assert_eq!(per_dir.len(), n_acts);
    let all: Vec<_> = (0..dirs).flat_map(|_| per_dir.clone()).collect();
    let a = RecurrentAttrs {
        hidden: HIDDEN,
        direction: c.direction,
        activations: all.iter().map(|x| x.0).collect(),
        alphas: all.iter().map(|x| x.1).collect(),
        betas: all.iter().map(|x| x.2).collect(),
        clip: c.clip,
        batch_first: c.batch_first,
        linear_before_reset: c.linear_before_reset,
        input_forget: c.input_forget,
    };
    let mut g = Graph::new("rnn");
    let xs = if c.batch_first { vec![BATCH, SEQ, INPUT] } else { vec![SEQ, BATCH, INPUT] };
    let n_x: usize = xs.iter().product();
    let mut feeds =
        vec![Tensor::from_data(&TensorData::from_f32(xs.clone(), &rng.vec(n_x, 2.0))).unwrap()];
    let x = g.add_input("x", TensorType::new(DType::F32, xs));
    let gh = gates * HIDDEN;
    let w = g.add_const(
        "w",
        TensorData::from_f32(vec![dirs, gh, INPUT], &rng.vec(dirs * gh * INPUT, 0.8)),
    );
    let r = g.add_const(
        "r",
        TensorData::from_f32(vec![dirs, gh, HIDDEN], &rng.vec(dirs * gh * HIDDEN, 0.8)),
    );
    let b =
        g.add_const("b", TensorData::from_f32(vec![dirs, 2 * gh], &rng.vec(dirs * 2 * gh, 0.5)));
    let mut inputs = vec![x, w, r, b];
    let state = if c.batch_first { vec![BATCH, dirs, HIDDEN] } else { vec![dirs, BATCH, HIDDEN] };
    let n_states = if c.kind == Kind::Lstm { 2 } else { 1 };
    for k in 0..n_states {
        let n = dirs * BATCH * HIDDEN;
        let name = ["h0", "c0"][k];
        let v = match c.init {
            Init::Zero => g.add_const(name, TensorData::from_f32(state.clone(), &vec![0.0; n])),
            Init::Const => g.add_const(name, TensorData::from_f32(state.clone(), &rng.vec(n, 1.0))),
            Init::Input => {
                let t = TensorData::from_f32(state.clone(), &rng.vec(n, 1.0));
                feeds.push(Tensor::from_data(&t).unwrap());
                g.add_input(name, TensorType::new(DType::F32, state.clone()))
            }
        };
        inputs.push(v);
    }
    if c.peepholes {
        inputs.push(g.add_const(
            "p",
            TensorData::from_f32(vec![dirs, 3 * HIDDEN], &rng.vec(dirs * 3 * HIDDEN, 0.5)),
        ));
    }
    let ys =
        if c.batch_first { vec![BATCH, SEQ, dirs, HIDDEN] } else { vec![SEQ, dirs, BATCH, HIDDEN] };
    let mut outs = vec![("y".to_string(), TensorType::new(DType::F32, ys))];
    for k in 0..n_states {
        outs.push((["y_h", "y_c"][k].to_string(), TensorType::new(DType::F32, state.clone())));
    }
    let op = match c.kind {
        Kind::Lstm => Op::Lstm(a),
        Kind::Gru => Op::Gru(a),
        Kind::Rnn => Op::Rnn(a),
    };
    let n = g.add_node("cell", op, inputs, outs);
    let outputs = g.node(n).outputs.clone();
    g.set_outputs(outputs);
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{c:?}: the test graph: {e}"));
    (g, feeds)
}

/// The largest difference over the largest magnitude, over every output.
fn rel_diff(got: &[Tensor], want: &[Tensor]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut diff, mut mag) = (0.0f64, 1e-30f64);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.shape(), w.shape());
        for (a, b) in g.to_f64_vec().iter().zip(w.to_f64_vec()) {
            diff = diff.max((a - b).abs());
            mag = mag.max(b.abs());
        }
    }
    diff / mag
}

fn check(c: &Case, seed: u64) {
    let mut rng = Rng(seed);
    let (mut g, feeds) = build(c, &mut rng);
    let want = Runner::new(&g).unwrap().run(feeds.clone()).unwrap();
    let pass = pass_by_name("unroll-recurrent").expect("the pass is registered");
    let stats = pass.run(&mut g, &PassContext::default()).unwrap();
    assert_eq!(stats.get("recurrent ops unrolled"), Some(&1), "{c:?}");
    g.compact().unwrap();
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{c:?}: after the pass: {e}"));
    assert!(
        g.nodes().all(|(_, n)| !matches!(n.op, Op::Lstm(_) | Op::Gru(_) | Op::Rnn(_))),
        "{c:?}: a recurrent op is left"
    );
    let names: Vec<&str> = g.outputs().iter().map(|&v| g.value(v).name.as_str()).collect();
    assert_eq!(&names[..2], &["y", "y_h"], "{c:?}: the outputs keep their names");
    let got = Runner::new(&g).unwrap().run(feeds).unwrap();
    let rel = rel_diff(&got, &want);
    assert!(rel <= 1e-5, "{c:?}: relative difference {rel:e}");
    // The outputs differ from zero: a test of zeros would hold any rewrite.
    assert!(want.iter().all(|t| t.to_f64_vec().iter().any(|&v| v.abs() > 1e-3)), "{c:?}");
}

const DIRECTIONS: [Direction; 3] =
    [Direction::Forward, Direction::Reverse, Direction::Bidirectional];

#[test]
fn every_cell_direction_and_initial_state() {
    let mut seed = 1;
    for kind in [Kind::Lstm, Kind::Gru, Kind::Rnn] {
        for direction in DIRECTIONS {
            for init in [Init::Zero, Init::Const, Init::Input] {
                for batch_first in [false, true] {
                    let mut c = Case::new(kind, direction, init);
                    c.batch_first = batch_first;
                    seed += 1;
                    check(&c, seed);
                }
            }
        }
    }
}

#[test]
fn gru_linear_before_reset() {
    for direction in DIRECTIONS {
        for init in [Init::Zero, Init::Input] {
            let mut c = Case::new(Kind::Gru, direction, init);
            c.linear_before_reset = true;
            check(&c, 100);
        }
    }
}

#[test]
fn clip_peepholes_and_coupled_gates() {
    for init in [Init::Zero, Init::Input] {
        let mut c = Case::new(Kind::Lstm, Direction::Bidirectional, init);
        c.clip = Some(0.7);
        c.peepholes = true;
        check(&c, 200);
        c.input_forget = true;
        check(&c, 201);
        let mut c = Case::new(Kind::Gru, Direction::Forward, init);
        c.clip = Some(0.5);
        check(&c, 202);
    }
}

#[test]
fn other_activations() {
    let lstm = vec![
        (RnnAct::HardSigmoid, 0.2, 0.5),
        (RnnAct::ScaledTanh, 0.9, 1.3),
        (RnnAct::Softsign, 0.0, 0.0),
    ];
    let gru = vec![(RnnAct::Sigmoid, 0.0, 0.0), (RnnAct::Elu, 0.8, 0.0)];
    let rnn: Vec<Vec<(RnnAct, f32, f32)>> = vec![
        vec![(RnnAct::Relu, 0.0, 0.0)],
        vec![(RnnAct::Affine, 0.7, 0.2)],
        vec![(RnnAct::LeakyRelu, 0.1, 0.0)],
        vec![(RnnAct::ThresholdedRelu, 0.3, 0.0)],
        vec![(RnnAct::Softplus, 0.0, 0.0)],
    ];
    let mut c = Case::new(Kind::Lstm, Direction::Forward, Init::Input);
    c.acts = Some(lstm);
    check(&c, 300);
    let mut c = Case::new(Kind::Gru, Direction::Reverse, Init::Const);
    c.acts = Some(gru);
    check(&c, 301);
    for (k, acts) in rnn.into_iter().enumerate() {
        let mut c = Case::new(Kind::Rnn, Direction::Bidirectional, Init::Input);
        c.acts = Some(acts);
        check(&c, 310 + k as u64);
    }
}

#[test]
fn non_constant_weights_are_refused_by_name() {
    let mut rng = Rng(400);
    let (mut g, _) = build(&Case::new(Kind::Rnn, Direction::Forward, Init::Zero), &mut rng);
    let ty = TensorType::new(DType::F32, vec![1, HIDDEN, INPUT]);
    let wi = g.add_input("w_in", ty);
    let n = g.node_ids()[0];
    g.node_mut(n).inputs[1] = wi;
    let pass = pass_by_name("unroll-recurrent").unwrap();
    let e = pass.run(&mut g, &PassContext::default()).unwrap_err().to_string();
    assert!(e.contains("'cell'") && e.contains("W 'w_in'"), "{e}");
}
