//! LSTM, GRU and RNN: attributes resolved (default activations and their alpha/beta), absent
//! optional inputs (B, initial_h, initial_c) supplied as zeros so that the op's inputs are
//! positional. `sequence_lens` must be absent or a constant giving every sequence its full
//! length.

use super::{show, Ctx, Import, Lowered, R};
use cimc_ir::{DType, Direction, Op, RecurrentAttrs, RnnAct, TensorData, ValueId};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("LSTM", |ctx| recurrent(ctx, Kind::Lstm))
        .values(&[4])
        .note("programs: unrolled per time step (unroll-recurrent); sequence_lens absent or full"),
    Import::new("GRU", |ctx| recurrent(ctx, Kind::Gru))
        .values(&[4])
        .note("programs: unrolled per time step (unroll-recurrent); sequence_lens absent or full"),
    Import::new("RNN", |ctx| recurrent(ctx, Kind::Rnn))
        .values(&[4])
        .note("programs: unrolled per time step (unroll-recurrent); sequence_lens absent or full"),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Lstm,
    Gru,
    Rnn,
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Lstm => 4,
            Kind::Gru => 3,
            Kind::Rnn => 1,
        }
    }

    fn default_acts(self) -> &'static [RnnAct] {
        match self {
            Kind::Lstm => &[RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
            Kind::Gru => &[RnnAct::Sigmoid, RnnAct::Tanh],
            Kind::Rnn => &[RnnAct::Tanh],
        }
    }
}

/// ONNX's name of an activation, and its default alpha and beta (`None`: it takes none).
fn onnx_act(name: &str) -> R<(RnnAct, Option<f32>, Option<f32>)> {
    Ok(match name {
        "Relu" => (RnnAct::Relu, None, None),
        "Tanh" => (RnnAct::Tanh, None, None),
        "Sigmoid" => (RnnAct::Sigmoid, None, None),
        "Affine" => (RnnAct::Affine, Some(1.0), Some(0.0)),
        "LeakyRelu" => (RnnAct::LeakyRelu, Some(0.01), None),
        "ThresholdedRelu" => (RnnAct::ThresholdedRelu, Some(1.0), None),
        "ScaledTanh" => (RnnAct::ScaledTanh, Some(1.0), Some(1.0)),
        "HardSigmoid" => (RnnAct::HardSigmoid, Some(0.2), Some(0.5)),
        "Elu" => (RnnAct::Elu, Some(1.0), None),
        "Softsign" => (RnnAct::Softsign, None, None),
        "Softplus" => (RnnAct::Softplus, None, None),
        other => return Err(format!("attribute 'activations': unknown activation '{other}'")),
    })
}

/// The activations with their alphas and betas: the given `activation_alpha`/`beta` are taken
/// in order by the activations that have one (onnxruntime's rule), defaults elsewhere.
fn activations(ctx: &Ctx, kind: Kind, dirs: usize) -> R<(Vec<RnnAct>, Vec<f32>, Vec<f32>)> {
    let per_dir = kind.default_acts().len();
    let names: Vec<String> = match ctx.attrs.strings("activations")? {
        Some(v) if v.len() == per_dir * dirs => v,
        Some(v) => {
            return Err(format!(
                "attribute 'activations' {v:?}: expected {} names ({per_dir} per direction)",
                per_dir * dirs
            ))
        }
        None => (0..dirs)
            .flat_map(|_| kind.default_acts())
            .map(|a| if *a == RnnAct::Sigmoid { "Sigmoid" } else { "Tanh" }.to_string())
            .collect(),
    };
    let mut given_a = ctx.attrs.floats("activation_alpha")?.unwrap_or(&[]).iter();
    let mut given_b = ctx.attrs.floats("activation_beta")?.unwrap_or(&[]).iter();
    let (mut acts, mut alphas, mut betas) = (Vec::new(), Vec::new(), Vec::new());
    for n in &names {
        let (act, da, db) = onnx_act(n)?;
        acts.push(act);
        alphas.push(da.map_or(0.0, |d| given_a.next().copied().unwrap_or(d)));
        betas.push(db.map_or(0.0, |d| given_b.next().copied().unwrap_or(d)));
    }
    Ok((acts, alphas, betas))
}

fn recurrent(ctx: &mut Ctx, kind: Kind) -> R<Lowered> {
    let mut known = vec![
        "activation_alpha",
        "activation_beta",
        "activations",
        "clip",
        "direction",
        "hidden_size",
        "layout",
    ];
    match kind {
        Kind::Lstm => known.push("input_forget"),
        Kind::Gru => known.push("linear_before_reset"),
        Kind::Rnn => {}
    }
    ctx.attrs.check_known(&known)?;
    let lstm = kind == Kind::Lstm;
    ctx.max_inputs(if lstm { 8 } else { 6 })?;
    ctx.max_outputs(if lstm { 3 } else { 2 })?;
    let (x, w, r) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let (xt, wt) = (ctx.ty(x).clone(), ctx.ty(w).clone());
    let direction = match ctx.attrs.string("direction")?.as_deref().unwrap_or("forward") {
        "forward" => Direction::Forward,
        "reverse" => Direction::Reverse,
        "bidirectional" => Direction::Bidirectional,
        d => return Err(format!("attribute 'direction': unknown direction '{d}'")),
    };
    let batch_first = ctx.attrs.bool_or("layout", false)?;
    let [seq, batch] = match xt.shape[..] {
        [s, b, _] if !batch_first => [s, b],
        [b, s, _] => [s, b],
        _ => return Err(format!("expected a 3-D input X, got {}", show(&xt))),
    };
    let gates = kind.gates();
    let hidden = match (ctx.attrs.int("hidden_size")?, wt.shape.get(1)) {
        (Some(h), _) if h > 0 => h as usize,
        (Some(h), _) => return Err(format!("attribute 'hidden_size' must be >= 1, got {h}")),
        (None, Some(&g)) if g % gates == 0 && g > 0 => g / gates,
        (None, _) => return Err(format!("cannot infer hidden_size from W {}", show(&wt))),
    };
    let dirs = if direction == Direction::Bidirectional { 2 } else { 1 };
    let (activations, alphas, betas) = activations(ctx, kind, dirs)?;
    let clip = ctx.attrs.float("clip")?;
    if clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
        return Err(format!("attribute 'clip' must be > 0, got {clip:?}"));
    }
    if let Some(lens) = ctx.ints_operand(4, "sequence_lens")? {
        if lens.len() != batch || lens.iter().any(|&l| l != seq as i64) {
            return Err(format!(
                "sequence_lens {lens:?}: only full sequences ({seq} steps for each of {batch}) are supported"
            ));
        }
    }
    let a = RecurrentAttrs {
        hidden,
        direction,
        activations,
        alphas,
        betas,
        clip,
        batch_first,
        linear_before_reset: ctx.attrs.bool_or("linear_before_reset", false)?,
        input_forget: ctx.attrs.bool_or("input_forget", false)?,
    };
    let dtype = xt.dtype;
    let state = if batch_first { vec![batch, dirs, hidden] } else { vec![dirs, batch, hidden] };
    let mut inputs = vec![x, w, r];
    inputs.push(or_zeros(ctx, 3, dtype, vec![dirs, 2 * gates * hidden], "B")?);
    inputs.push(or_zeros(ctx, 5, dtype, state.clone(), "initial_h")?);
    if lstm {
        inputs.push(or_zeros(ctx, 6, dtype, state, "initial_c")?);
        inputs.extend(ctx.opt(7));
    }
    let op = match kind {
        Kind::Lstm => Op::Lstm(a),
        Kind::Gru => Op::Gru(a),
        Kind::Rnn => Op::Rnn(a),
    };
    Ok(Lowered::Op(op, inputs))
}

/// Input `i`, or a constant of zeros of `shape` when it is absent.
fn or_zeros(ctx: &mut Ctx, i: usize, dtype: DType, shape: Vec<usize>, what: &str) -> R<ValueId> {
    if let Some(v) = ctx.opt(i) {
        return Ok(v);
    }
    let n = shape.iter().product();
    let data = match dtype {
        DType::F64 => TensorData::from_f64(shape, &vec![0.0; n]),
        DType::F32 => TensorData::from_f32(shape, &vec![0.0; n]),
        other => return Err(format!("expected a float input X, got {other}")),
    };
    Ok(ctx.add_const(what, data))
}
