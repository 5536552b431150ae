//! `unroll-recurrent`: LSTM, GRU and RNN rewritten as the ops of their time steps, each of which
//! the integer program runs.
//!
//! Requires: a float (f32) graph with static shapes (the sequence length is fixed at import,
//! `--input-shape`); the recurrent op's W, R, B and peepholes constant (its initial states may
//! be anything); `sequence_lens` absent or full (the importer checks it).
//!
//! Does: per direction (forward, reverse, or both), the input products of every time step at
//! once — `X` reshaped to `[seq·batch, I]` (transposed first when batch-first), one Gemm per
//! gate with that gate's rows of W as a constant weight and the sum of its biases folded into
//! `C` — then per time step a Slice of those rows, the recurrent product `h·R_gᵀ` as a Gemm per
//! gate with a constant weight (the same weight value at every step), an Add, the clip (Clip),
//! the gate activation (Sigmoid, Tanh, Relu, HardSigmoid, LeakyRelu, or the unary op of the
//! others; Affine and ScaledTanh as Mul/Add by scalars around it), and the state update as Mul,
//! Add and `Sub(1, z)` of activations. Peepholes and GRU's `r ⊙ Rb_h` at a zero state (a
//! product by a constant vector) are Gemms by a diagonal constant weight. An initial state that
//! is a constant of zeros drops the terms it would zero; any other initial state is read
//! (a slice of it per direction; a nonzero constant one leaves an op with a constant operand of
//! several values, which `lower` refuses by name). Y, Y_h and Y_c — those something reads — are Concat and
//! Reshape (Transpose when batch-first) of the step states; they keep the op's value names.
//!
//! The graph grows linearly with the sequence (about 25 nodes per LSTM step and direction); on
//! a chip, `tile` maps every step's recurrent products on arrays of their own, so R is held once
//! per time step.
//!
//! Guarantees: the same function as the recurrent op up to f32 rounding (the float interpreter
//! computes the op in f64, the unrolled graph op by op in f32); no LSTM, GRU or RNN left; every
//! weight product is a Gemm with a constant weight (so `tile` maps it onto crossbars). A
//! recurrent op it cannot unroll (non-constant weights, not f32) is refused by name.

use crate::error::{PassError, Result};
use crate::{Pass, PassContext, Stats};
use cimc_ir::{
    DType, Direction, Graph, NodeId, Op, RecurrentAttrs, RecurrentCell as Cell, RnnAct, SliceAxis,
    TensorData, TensorType, UnaryOp, ValueId,
};

pub struct UnrollRecurrent;

const PASS: &str = "unroll-recurrent";

impl Pass for UnrollRecurrent {
    fn name(&self) -> &'static str {
        PASS
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        for n in g.node_ids() {
            let cell = match &g.node(n).op {
                Op::Lstm(_) => Cell::Lstm,
                Op::Gru(_) => Cell::Gru,
                Op::Rnn(_) => Cell::Rnn,
                _ => continue,
            };
            let steps = unroll(g, n, cell)?;
            *stats.entry("recurrent ops unrolled").or_default() += 1;
            *stats.entry("time steps").or_default() += steps as u64;
        }
        Ok(stats)
    }
}

/// One gate activation with its alpha and beta.
#[derive(Clone, Copy)]
struct Act(RnnAct, f32, f32);

/// The constants of one direction: per gate, W's rows `[H, I]` and R's rows `[H, H]` (as
/// graph constants), and the two halves of B.
struct DirWeights {
    w: Vec<ValueId>,
    r: Vec<ValueId>,
    wb: Vec<Vec<f32>>,
    rb: Vec<Vec<f32>>,
    /// LSTM's peepholes i, o, f (`None`: absent or all zero).
    p: [Option<Vec<f32>>; 3],
    acts: Vec<Act>,
}

/// What the unrolled graph is made of: new nodes named after the recurrent op.
struct Emit<'g> {
    g: &'g mut Graph,
    name: String,
    batch: usize,
    hidden: usize,
}

impl Emit<'_> {
    /// A node of one f32 output of `shape`, named `<op>_<what>`.
    fn node(&mut self, what: &str, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let name = format!("{}_{what}", self.name);
        let ty = TensorType::new(DType::F32, shape);
        let n = self.g.add_node(name.clone(), op, inputs, vec![(name, ty)]);
        self.g.node(n).outputs[0]
    }

    /// A `[batch, H]` result of `op`.
    fn state_op(&mut self, what: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let shape = vec![self.batch, self.hidden];
        self.node(what, op, inputs, shape)
    }

    fn konst(&mut self, what: &str, shape: Vec<usize>, vals: &[f32]) -> ValueId {
        let name = format!("{}_{what}", self.name);
        self.g.add_const(name, TensorData::from_f32(shape, vals))
    }

    fn scalar(&mut self, what: &str, v: f32) -> ValueId {
        self.konst(what, vec![], &[v])
    }

    /// `x·Wᵀ (+ bias)`: a Gemm with `w` (`[N, K]`) transposed.
    fn gemm(&mut self, what: &str, x: ValueId, w: ValueId, bias: Option<ValueId>) -> ValueId {
        let rows = self.g.ty(x).shape[0];
        let cols = self.g.ty(w).shape[0];
        let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, clamp: None };
        let inputs = std::iter::once(x).chain(Some(w)).chain(bias).collect();
        self.node(what, op, inputs, vec![rows, cols])
    }

    /// `x ⊙ v` for a constant vector `v` of H values: a Gemm by the diagonal matrix of `v`.
    fn times_vector(&mut self, what: &str, x: ValueId, v: &[f32]) -> ValueId {
        let h = v.len();
        let mut diag = vec![0.0; h * h];
        for (i, &vi) in v.iter().enumerate() {
            diag[i * h + i] = vi;
        }
        let d = self.konst(&format!("{what}_diag"), vec![h, h], &diag);
        self.gemm(what, x, d, None)
    }

    fn add(&mut self, what: &str, a: ValueId, b: Option<ValueId>) -> ValueId {
        match b {
            Some(b) => self.state_op(what, Op::Add, vec![a, b]),
            None => a,
        }
    }

    fn mul(&mut self, what: &str, a: ValueId, b: ValueId) -> ValueId {
        self.state_op(what, Op::Mul, vec![a, b])
    }

    /// `x · s` by a scalar (skipped when `s` is 1).
    fn scale(&mut self, what: &str, x: ValueId, s: f32) -> ValueId {
        if s == 1.0 {
            return x;
        }
        let c = self.scalar(&format!("{what}_by"), s);
        self.mul(what, x, c)
    }

    /// `clamp(x, −clip, clip)` when there is a clip.
    fn clip(&mut self, what: &str, x: ValueId, clip: Option<f32>) -> ValueId {
        let Some(c) = clip else { return x };
        let (lo, hi) =
            (self.scalar(&format!("{what}_lo"), -c), self.scalar(&format!("{what}_hi"), c));
        self.state_op(what, Op::Clip, vec![x, lo, hi])
    }

    /// The gate activation `act` of `x`.
    fn activate(&mut self, what: &str, x: ValueId, act: Act) -> ValueId {
        let Act(f, alpha, beta) = act;
        let op = match f {
            RnnAct::Relu => Op::Relu,
            RnnAct::Tanh => Op::Tanh,
            RnnAct::Sigmoid => Op::Sigmoid,
            RnnAct::HardSigmoid => Op::HardSigmoid { alpha, beta },
            RnnAct::LeakyRelu => Op::LeakyRelu { alpha },
            RnnAct::ThresholdedRelu => Op::Unary(UnaryOp::ThresholdedRelu { alpha }),
            RnnAct::Elu => Op::Unary(UnaryOp::Elu { alpha }),
            RnnAct::Softsign => Op::Unary(UnaryOp::Softsign),
            RnnAct::Softplus => Op::Unary(UnaryOp::Softplus),
            RnnAct::Affine => {
                let ax = self.scale(&format!("{what}_a"), x, alpha);
                if beta == 0.0 {
                    return ax;
                }
                let b = self.scalar(&format!("{what}_b"), beta);
                return self.state_op(what, Op::Add, vec![ax, b]);
            }
            RnnAct::ScaledTanh => {
                let bx = self.scale(&format!("{what}_b"), x, beta);
                let t = self.state_op(&format!("{what}_tanh"), Op::Tanh, vec![bx]);
                return self.scale(what, t, alpha);
            }
        };
        self.state_op(what, op, vec![x])
    }

    /// `1 − x`.
    fn one_minus(&mut self, what: &str, x: ValueId) -> ValueId {
        let one = self.scalar(&format!("{what}_one"), 1.0);
        self.state_op(what, Op::Sub, vec![one, x])
    }
}

/// The recurrent op's constant input `k` as f32 values, or a refusal naming it.
fn const_f32(g: &Graph, n: NodeId, k: usize, what: &str) -> Result<Vec<f32>> {
    let v = g.node(n).inputs[k];
    match g.value(v).const_data() {
        Some(d) if d.dtype() == DType::F32 => Ok(d.to_f32_vec()),
        _ => Err(PassError::node(
            PASS,
            g,
            n,
            format!("its {what} '{}' is not an f32 constant: only constant weights are unrolled onto crossbars", g.value(v).name),
        )),
    }
}

/// Rows `[g·H, (g+1)·H)` of direction `d` of a `[dirs, G·H, K]` array (`G` gates), as a graph
/// constant `[H, K]`.
fn gate_rows(
    e: &mut Emit,
    all: &[f32],
    (d, gates, gate): (usize, usize, usize),
    k: usize,
    what: &str,
) -> ValueId {
    let h = e.hidden;
    let start = (d * gates + gate) * h * k;
    e.konst(what, vec![h, k], &all[start..start + h * k])
}

/// The shape facts of one recurrent op.
struct Dims {
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    dirs: usize,
}

/// Unrolls recurrent node `n`; returns its number of time steps.
fn unroll(g: &mut Graph, n: NodeId, cell: Cell) -> Result<usize> {
    let node = g.node(n).clone();
    let a = match &node.op {
        Op::Lstm(a) | Op::Gru(a) | Op::Rnn(a) => a.clone(),
        _ => return Err(PassError::Internal(format!("'{}' is no recurrent op", node.name))),
    };
    let refuse = |g: &Graph, msg: String| PassError::node(PASS, g, n, msg);
    let xt = g.ty(node.inputs[0]).clone();
    if xt.dtype != DType::F32 {
        return Err(refuse(
            g,
            format!("input X is {}: only f32 recurrent ops are unrolled", xt.dtype),
        ));
    }
    let [seq, batch, input] = match xt.shape[..] {
        [s, b, i] if !a.batch_first => [s, b, i],
        [b, s, i] => [s, b, i],
        _ => return Err(refuse(g, format!("expected a 3-D input X, got {:?}", xt.shape))),
    };
    if seq == 0 || batch == 0 {
        return Err(refuse(g, format!("an empty sequence (X {:?}) has no time step", xt.shape)));
    }
    let dims = Dims { seq, batch, input, hidden: a.hidden, dirs: a.num_directions() };
    let (gates, h) = (cell.gates(), a.hidden);
    let w = const_f32(g, n, 1, "W")?;
    let r = const_f32(g, n, 2, "R")?;
    let b = const_f32(g, n, 3, "B")?;
    let lstm = cell == Cell::Lstm;
    let p = match node.inputs.get(6) {
        Some(_) if lstm => Some(const_f32(g, n, 6, "P")?),
        _ => None,
    };
    let d = dims.dirs;
    if w.len() != d * gates * h * input
        || r.len() != d * gates * h * h
        || b.len() != d * 2 * gates * h
        || p.as_ref().is_some_and(|p| p.len() != d * 3 * h)
        || a.activations.len() != d * cell.activation_count()
        || a.alphas.len() != a.activations.len()
        || a.betas.len() != a.activations.len()
    {
        return Err(refuse(
            g,
            "weights, bias, peepholes or activations do not match the input and hidden size".into(),
        ));
    }
    let mut e = Emit { g, name: node.name.clone(), batch, hidden: h };
    let x = node.inputs[0];
    let xs = if a.batch_first {
        e.node(
            "x_seq_first",
            Op::Transpose { perm: vec![1, 0, 2] },
            vec![x],
            vec![seq, batch, input],
        )
    } else {
        x
    };
    let x_rows = e.node(
        "x_rows",
        Op::Reshape { shape: vec![seq * batch, input] },
        vec![xs],
        vec![seq * batch, input],
    );
    let consts = Consts { w: &w, r: &r, b: &b, p: p.as_deref() };
    let mut runs = Vec::new();
    for dir in 0..dims.dirs {
        let weights = dir_weights(&mut e, cell, &a, dir, &consts, &dims);
        let h0 = initial_state(&mut e, node.inputs[4], dir, &a, &dims, "h0");
        let c0 =
            if lstm { initial_state(&mut e, node.inputs[5], dir, &a, &dims, "c0") } else { None };
        runs.push(run_direction(&mut e, cell, &a, dir, &weights, x_rows, &dims, (h0, c0)));
    }
    let made = outputs(&mut e, &node.outputs, &a, &dims, &runs);
    for (&old, new) in node.outputs.iter().zip(made) {
        let Some(new) = new else { continue };
        let old_name = g.value(old).name.clone();
        g.value_mut(new).ty.quant = g.ty(old).quant.clone();
        g.replace_uses(old, new);
        g.rename_value(old, &format!("{old_name}_unrolled"));
        g.rename_value(new, &old_name);
    }
    g.remove_node(n);
    Ok(seq)
}

/// The recurrent op's constant inputs, as f32 values.
struct Consts<'a> {
    w: &'a [f32],
    r: &'a [f32],
    b: &'a [f32],
    p: Option<&'a [f32]>,
}

/// The gate names of a cell, in ONNX's gate order.
fn gate_names(cell: Cell) -> &'static [&'static str] {
    match cell {
        Cell::Lstm => &["i", "o", "f", "c"],
        Cell::Gru => &["z", "r", "h"],
        Cell::Rnn => &["h"],
    }
}

/// Direction `dir`'s weights as graph constants, its biases and activations, and the input
/// products of every time step (in [`DirRun`]'s `x`).
fn dir_weights(
    e: &mut Emit,
    cell: Cell,
    a: &RecurrentAttrs,
    dir: usize,
    c: &Consts,
    dims: &Dims,
) -> DirWeights {
    let (gates, h) = (cell.gates(), dims.hidden);
    let names = gate_names(cell);
    let mut wts = DirWeights {
        w: vec![],
        r: vec![],
        wb: vec![],
        rb: vec![],
        p: [None, None, None],
        acts: vec![],
    };
    for (gate, gname) in names.iter().enumerate() {
        let w = gate_rows(e, c.w, (dir, gates, gate), dims.input, &format!("d{dir}_w{gname}"));
        let r = gate_rows(e, c.r, (dir, gates, gate), h, &format!("d{dir}_r{gname}"));
        let wb0 = (dir * 2 * gates + gate) * h;
        let rb0 = (dir * 2 * gates + gates + gate) * h;
        wts.w.push(w);
        wts.r.push(r);
        wts.wb.push(c.b[wb0..wb0 + h].to_vec());
        wts.rb.push(c.b[rb0..rb0 + h].to_vec());
    }
    if let Some(p) = c.p {
        for (k, slot) in wts.p.iter_mut().enumerate() {
            let v = &p[(dir * 3 + k) * h..(dir * 3 + k + 1) * h];
            *slot = v.iter().any(|&x| x != 0.0).then(|| v.to_vec());
        }
    }
    let na = cell.activation_count();
    wts.acts = (dir * na..(dir + 1) * na)
        .map(|i| Act(a.activations[i], a.alphas[i], a.betas[i]))
        .collect();
    wts
}

/// Direction `dir` of an initial state (`[dirs, batch, H]`, batch-first `[batch, dirs, H]`) as
/// `[batch, H]`: `None` for a constant of zeros, a constant for another constant, else a Slice
/// and a Reshape of it.
fn initial_state(
    e: &mut Emit,
    v: ValueId,
    dir: usize,
    a: &RecurrentAttrs,
    dims: &Dims,
    what: &str,
) -> Option<ValueId> {
    let (batch, h, dirs) = (dims.batch, dims.hidden, dims.dirs);
    if let Some(data) = e.g.value(v).const_data() {
        let all = data.to_f32_vec();
        let mut vals = Vec::with_capacity(batch * h);
        for b in 0..batch {
            let row = if a.batch_first { b * dirs + dir } else { dir * batch + b };
            vals.extend_from_slice(&all[row * h..(row + 1) * h]);
        }
        if vals.iter().all(|&x| x == 0.0) {
            return None;
        }
        return Some(e.konst(&format!("d{dir}_{what}"), vec![batch, h], &vals));
    }
    let axis = usize::from(a.batch_first);
    let mut part = v;
    if dirs > 1 {
        let mut shape = e.g.ty(v).shape.clone();
        shape[axis] = 1;
        let s = SliceAxis { axis, start: dir as i64, end: dir as i64 + 1, step: 1 };
        part = e.node(&format!("d{dir}_{what}_slice"), Op::Slice { axes: vec![s] }, vec![v], shape);
    }
    Some(e.state_op(&format!("d{dir}_{what}"), Op::Reshape { shape: vec![batch, h] }, vec![part]))
}

/// The states of one direction: `h` at every time step (by time index), the last `h` and the
/// last `c` (LSTM).
struct DirRun {
    hs: Vec<ValueId>,
    last_h: ValueId,
    last_c: Option<ValueId>,
}

/// Direction `dir` unrolled: the input products of every step, then the steps in the
/// direction's order.
#[allow(clippy::too_many_arguments)]
fn run_direction(
    e: &mut Emit,
    cell: Cell,
    a: &RecurrentAttrs,
    dir: usize,
    wts: &DirWeights,
    x_rows: ValueId,
    dims: &Dims,
    (h0, c0): (Option<ValueId>, Option<ValueId>),
) -> DirRun {
    let (seq, batch, h) = (dims.seq, dims.batch, dims.hidden);
    let names = gate_names(cell);
    // The input product of every time step, per gate, with the biases that add to it.
    let mut xprod = Vec::new();
    for (gate, gname) in names.iter().enumerate() {
        let keep_rb = !(cell == Cell::Gru && gate == 2 && a.linear_before_reset);
        let bias: Vec<f32> = wts.wb[gate]
            .iter()
            .zip(&wts.rb[gate])
            .map(|(&wb, &rb)| if keep_rb { wb + rb } else { wb })
            .collect();
        let c = bias
            .iter()
            .any(|&v| v != 0.0)
            .then(|| e.konst(&format!("d{dir}_b{gname}"), vec![h], &bias));
        xprod.push(e.gemm(&format!("d{dir}_{gname}_x"), x_rows, wts.w[gate], c));
    }
    let reverse = a.direction == Direction::Reverse || dir == 1;
    let mut hs = vec![None; seq];
    let (mut hv, mut cv) = (h0, c0);
    for k in 0..seq {
        let t = if reverse { seq - 1 - k } else { k };
        let p = format!("d{dir}_t{t}");
        let st = Step { a, wts, names, xprod: &xprod, rows: (seq, batch, t), h: hv, c: cv, p: &p };
        let (hn, cn) = match cell {
            Cell::Lstm => {
                let (hn, cn) = lstm_step(e, &st);
                (hn, Some(cn))
            }
            Cell::Gru => (gru_step(e, &st), None),
            Cell::Rnn => (rnn_step(e, &st), None),
        };
        hs[t] = Some(hn);
        hv = Some(hn);
        cv = cn;
    }
    let hs: Vec<ValueId> =
        hs.into_iter().map(|v| v.expect("invariant: every time step ran")).collect();
    let last_h = hv.expect("invariant: a sequence has a step");
    DirRun { hs, last_h, last_c: cv }
}

/// What one time step reads: the input products of its gates (of every step), the previous
/// states (`None`: zero), and the prefix of its node names.
struct Step<'a> {
    a: &'a RecurrentAttrs,
    wts: &'a DirWeights,
    names: &'static [&'static str],
    xprod: &'a [ValueId],
    /// Sequence length, batch, and this step's time index.
    rows: (usize, usize, usize),
    h: Option<ValueId>,
    c: Option<ValueId>,
    p: &'a str,
}

impl Step<'_> {
    /// Gate `gate`'s input product at this step: its rows of the products of every step (a
    /// Slice, made when a gate reads it, so no step slices what it does not use).
    fn x(&self, e: &mut Emit, gate: usize) -> ValueId {
        let (seq, batch, t) = self.rows;
        let all = self.xprod[gate];
        if seq == 1 {
            return all;
        }
        let s = SliceAxis {
            axis: 0,
            start: (t * batch) as i64,
            end: ((t + 1) * batch) as i64,
            step: 1,
        };
        e.state_op(
            &format!("{}_{}_x", self.p, self.names[gate]),
            Op::Slice { axes: vec![s] },
            vec![all],
        )
    }
}

/// Gate `gate`'s input to its activation: the input product, plus `h·R_gᵀ`, plus the peephole
/// term `peep ⊙ c` when given, clipped.
fn gate_pre(e: &mut Emit, st: &Step, gate: usize, peep: Option<(&[f32], ValueId)>) -> ValueId {
    let (p, gname) = (st.p, st.names[gate]);
    let x = st.x(e, gate);
    let rec = st.h.map(|h| e.gemm(&format!("{p}_{gname}_h"), h, st.wts.r[gate], None));
    let mut s = e.add(&format!("{p}_{gname}_sum"), x, rec);
    if let Some((pv, c)) = peep {
        let t = e.times_vector(&format!("{p}_{gname}_peep"), c, pv);
        s = e.add(&format!("{p}_{gname}_peep_sum"), s, Some(t));
    }
    e.clip(&format!("{p}_{gname}_clip"), s, st.a.clip)
}

/// One LSTM step (gates i, o, f, c; peepholes i, o, f): the new `h` and `c`.
fn lstm_step(e: &mut Emit, st: &Step) -> (ValueId, ValueId) {
    let (f, g, hh) = (st.wts.acts[0], st.wts.acts[1], st.wts.acts[2]);
    let p = st.p;
    let peep = |k: usize, c: Option<ValueId>| st.wts.p[k].as_deref().zip(c);
    let pre_i = gate_pre(e, st, 0, peep(0, st.c));
    let i = e.activate(&format!("{p}_i"), pre_i, f);
    let pre_c = gate_pre(e, st, 3, None);
    let cand = e.activate(&format!("{p}_cand"), pre_c, g);
    let ic = e.mul(&format!("{p}_i_cand"), i, cand);
    let c_new = match st.c {
        None => ic,
        Some(c) => {
            let fg = if st.a.input_forget {
                e.one_minus(&format!("{p}_f"), i)
            } else {
                let pre_f = gate_pre(e, st, 2, peep(2, st.c));
                e.activate(&format!("{p}_f"), pre_f, f)
            };
            let fc = e.mul(&format!("{p}_f_c"), fg, c);
            e.add(&format!("{p}_c"), fc, Some(ic))
        }
    };
    let pre_o = gate_pre(e, st, 1, peep(1, Some(c_new)));
    let o = e.activate(&format!("{p}_o"), pre_o, f);
    let hc = e.activate(&format!("{p}_c_act"), c_new, hh);
    (e.mul(&format!("{p}_h"), o, hc), c_new)
}

/// One GRU step (gates z, r, h): the new `h = (1 − z) ⊙ n + z ⊙ h`.
fn gru_step(e: &mut Emit, st: &Step) -> ValueId {
    let (f, g) = (st.wts.acts[0], st.wts.acts[1]);
    let p = st.p;
    let pre_z = gate_pre(e, st, 0, None);
    let z = e.activate(&format!("{p}_z"), pre_z, f);
    let rb = &st.wts.rb[2];
    let rb_zero = rb.iter().all(|&v| v == 0.0);
    let reset = |e: &mut Emit| {
        let pre_r = gate_pre(e, st, 1, None);
        e.activate(&format!("{p}_r"), pre_r, f)
    };
    let rec = match (st.h, st.a.linear_before_reset) {
        (Some(h), true) => {
            let r = reset(e);
            let c = (!rb_zero).then(|| e.konst(&format!("{p}_rbh"), vec![rb.len()], rb));
            let hr = e.gemm(&format!("{p}_h_h"), h, st.wts.r[2], c);
            Some(e.mul(&format!("{p}_r_hr"), r, hr))
        }
        (None, true) if !rb_zero => {
            let r = reset(e);
            Some(e.times_vector(&format!("{p}_r_rbh"), r, rb))
        }
        (Some(h), false) => {
            let r = reset(e);
            let rh = e.mul(&format!("{p}_r_h"), r, h);
            Some(e.gemm(&format!("{p}_h_h"), rh, st.wts.r[2], None))
        }
        (None, _) => None,
    };
    let x = st.x(e, 2);
    let sum = e.add(&format!("{p}_h_sum"), x, rec);
    let pre_n = e.clip(&format!("{p}_h_clip"), sum, st.a.clip);
    let n = e.activate(&format!("{p}_n"), pre_n, g);
    let omz = e.one_minus(&format!("{p}_1_z"), z);
    let new = e.mul(&format!("{p}_1_z_n"), omz, n);
    match st.h {
        Some(h) => {
            let zh = e.mul(&format!("{p}_z_h"), z, h);
            e.add(&format!("{p}_h"), new, Some(zh))
        }
        None => new,
    }
}

/// One RNN step: `h = f(clip(x·Wᵀ + h·Rᵀ + b))`.
fn rnn_step(e: &mut Emit, st: &Step) -> ValueId {
    let pre = gate_pre(e, st, 0, None);
    e.activate(&format!("{}_h", st.p), pre, st.wts.acts[0])
}

/// Y, Y_h and Y_c, those that something reads, from the directions' states (`None` for an
/// output nothing reads).
fn outputs(
    e: &mut Emit,
    olds: &[ValueId],
    a: &RecurrentAttrs,
    dims: &Dims,
    runs: &[DirRun],
) -> Vec<Option<ValueId>> {
    let (seq, batch, h, dirs) = (dims.seq, dims.batch, dims.hidden, dims.dirs);
    let read = |e: &Emit, v: ValueId| e.g.outputs().contains(&v) || !e.g.users(v).is_empty();
    let mut made = Vec::new();
    for (slot, &old) in olds.iter().enumerate() {
        if !read(e, old) {
            made.push(None);
            continue;
        }
        let v = if slot == 0 {
            let parts: Vec<ValueId> = runs
                .iter()
                .enumerate()
                .map(|(d, run)| {
                    let cat = if seq == 1 {
                        run.hs[0]
                    } else {
                        e.node(
                            &format!("d{d}_y_cat"),
                            Op::Concat { axis: 0 },
                            run.hs.clone(),
                            vec![seq * batch, h],
                        )
                    };
                    e.node(
                        &format!("d{d}_y"),
                        Op::Reshape { shape: vec![seq, 1, batch, h] },
                        vec![cat],
                        vec![seq, 1, batch, h],
                    )
                })
                .collect();
            let y = join(e, "y", parts, 1, vec![seq, dirs, batch, h]);
            if a.batch_first {
                e.node(
                    "y_batch_first",
                    Op::Transpose { perm: vec![2, 0, 1, 3] },
                    vec![y],
                    vec![batch, seq, dirs, h],
                )
            } else {
                y
            }
        } else {
            let what = if slot == 1 { "y_h" } else { "y_c" };
            let lasts: Vec<ValueId> = runs
                .iter()
                .map(|run| {
                    if slot == 1 {
                        run.last_h
                    } else {
                        run.last_c.expect("invariant: an LSTM has a cell state")
                    }
                })
                .collect();
            let parts: Vec<ValueId> = lasts
                .into_iter()
                .enumerate()
                .map(|(d, s)| {
                    e.node(
                        &format!("d{d}_{what}"),
                        Op::Reshape { shape: vec![1, batch, h] },
                        vec![s],
                        vec![1, batch, h],
                    )
                })
                .collect();
            let y = join(e, what, parts, 0, vec![dirs, batch, h]);
            if a.batch_first {
                e.node(
                    &format!("{what}_batch_first"),
                    Op::Transpose { perm: vec![1, 0, 2] },
                    vec![y],
                    vec![batch, dirs, h],
                )
            } else {
                y
            }
        };
        made.push(Some(v));
    }
    made
}

/// The directions' parts concatenated along `axis` (one part: itself).
fn join(e: &mut Emit, what: &str, parts: Vec<ValueId>, axis: usize, shape: Vec<usize>) -> ValueId {
    if parts.len() == 1 {
        return parts[0];
    }
    e.node(what, Op::Concat { axis }, parts, shape)
}
