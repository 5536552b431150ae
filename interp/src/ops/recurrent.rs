//! LSTM, GRU and RNN in the float interpreter, in f64: ONNX's equations, one batch row and one
//! time step at a time, forward, reverse or both (the second direction's states and outputs
//! along the `num_directions` axis). The importer supplies zeros for an absent bias or initial
//! state, so every input is present here but LSTM's peepholes.

use super::bad;
use super::norm::{float_like, floats_of};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{Direction, RecurrentAttrs, RecurrentCell as Cell, RnnAct};

/// One activation with its alpha and beta.
#[derive(Clone, Copy)]
struct Act(RnnAct, f64, f64);

impl Act {
    fn apply(self, x: f64) -> f64 {
        let Act(f, a, b) = self;
        match f {
            RnnAct::Relu => x.max(0.0),
            RnnAct::Tanh => x.tanh(),
            RnnAct::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            RnnAct::Affine => a * x + b,
            RnnAct::LeakyRelu => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            RnnAct::ThresholdedRelu => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            RnnAct::ScaledTanh => a * (b * x).tanh(),
            RnnAct::HardSigmoid => (a * x + b).clamp(0.0, 1.0),
            RnnAct::Elu => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            RnnAct::Softsign => x / (1.0 + x.abs()),
            RnnAct::Softplus => x.exp().ln_1p(),
        }
    }
}

/// The weights of one direction, as row-major slices.
struct Dir<'a> {
    w: &'a [f64],
    r: &'a [f64],
    wb: &'a [f64],
    rb: &'a [f64],
    p: Option<&'a [f64]>,
    acts: Vec<Act>,
}

/// `out[g] = Σ_k m[g, k] · v[k] + b[g]`.
fn mat_vec(m: &[f64], v: &[f64], b: &[f64]) -> Vec<f64> {
    let k = v.len();
    b.iter()
        .enumerate()
        .map(|(g, &bg)| bg + m[g * k..(g + 1) * k].iter().zip(v).map(|(a, b)| a * b).sum::<f64>())
        .collect()
}

/// One time step of one batch row: the new hidden state (and cell state for LSTM).
fn step(
    cell: Cell,
    a: &RecurrentAttrs,
    d: &Dir,
    x: &[f64],
    h: &[f64],
    c: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let hs = a.hidden;
    let clip = |v: f64| match a.clip {
        Some(cl) => v.clamp(-(cl as f64), cl as f64),
        None => v,
    };
    let xw = mat_vec(d.w, x, d.wb);
    let zero = vec![0.0; d.rb.len()];
    match cell {
        Cell::Rnn => {
            let hr = mat_vec(d.r, h, d.rb);
            ((0..hs).map(|j| d.acts[0].apply(clip(xw[j] + hr[j]))).collect(), Vec::new())
        }
        Cell::Lstm => {
            let hr = mat_vec(d.r, h, d.rb);
            let pre = |g: usize, j: usize| xw[g * hs + j] + hr[g * hs + j];
            let peep = |k: usize, j: usize, cv: f64| d.p.map_or(0.0, |p| p[k * hs + j] * cv);
            let (f, g, hh) = (d.acts[0], d.acts[1], d.acts[2]);
            let mut hn = vec![0.0; hs];
            let mut cn = vec![0.0; hs];
            for j in 0..hs {
                // Gate order i, o, f, c; peepholes i, o, f.
                let i = f.apply(clip(pre(0, j) + peep(0, j, c[j])));
                let fg = if a.input_forget {
                    1.0 - i
                } else {
                    f.apply(clip(pre(2, j) + peep(2, j, c[j])))
                };
                let ct = g.apply(clip(pre(3, j)));
                cn[j] = fg * c[j] + i * ct;
                let o = f.apply(clip(pre(1, j) + peep(1, j, cn[j])));
                hn[j] = o * hh.apply(cn[j]);
            }
            (hn, cn)
        }
        Cell::Gru => {
            // Gate order z, r, h.
            let (f, g) = (d.acts[0], d.acts[1]);
            let hr = mat_vec(d.r, h, &zero);
            let z: Vec<f64> = (0..hs).map(|j| f.apply(clip(xw[j] + hr[j] + d.rb[j]))).collect();
            let r: Vec<f64> =
                (0..hs).map(|j| f.apply(clip(xw[hs + j] + hr[hs + j] + d.rb[hs + j]))).collect();
            let rh = &d.rb[2 * hs..];
            let cand: Vec<f64> = if a.linear_before_reset {
                (0..hs)
                    .map(|j| g.apply(clip(xw[2 * hs + j] + r[j] * (hr[2 * hs + j] + rh[j]))))
                    .collect()
            } else {
                let gated: Vec<f64> = h.iter().zip(&r).map(|(h, r)| h * r).collect();
                let rr = mat_vec(&d.r[2 * hs * hs..], &gated, rh);
                (0..hs).map(|j| g.apply(clip(xw[2 * hs + j] + rr[j]))).collect()
            };
            ((0..hs).map(|j| (1.0 - z[j]) * cand[j] + z[j] * h[j]).collect(), Vec::new())
        }
    }
}

/// Swaps the first two axes of a row-major 3-D array `[a, b, k]`.
fn swap01(v: &[f64], a: usize, b: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * k..(j * a + i + 1) * k]
                .copy_from_slice(&v[(i * b + j) * k..(i * b + j + 1) * k]);
        }
    }
    out
}

/// Y `[seq, dirs, batch, H]` to batch-first `[batch, seq, dirs, H]`.
fn batch_first_y(y: &[f64], seq: usize, dirs: usize, batch: usize, hs: usize) -> Vec<f64> {
    let mut out = vec![0.0; y.len()];
    for t in 0..seq {
        for d in 0..dirs {
            for b in 0..batch {
                let src = ((t * dirs + d) * batch + b) * hs;
                let dst = ((b * seq + t) * dirs + d) * hs;
                out[dst..dst + hs].copy_from_slice(&y[src..src + hs]);
            }
        }
    }
    out
}

/// Runs the op: y, y_h and (LSTM) y_c, as many as asked for.
pub(crate) fn eval(
    cell: Cell,
    a: &RecurrentAttrs,
    inputs: &[&Tensor],
    n_outputs: usize,
) -> Result<Vec<Tensor>> {
    let lstm = cell == Cell::Lstm;
    if inputs.len() < if lstm { 6 } else { 5 } {
        return Err(bad(format!(
            "expects its weights, bias and initial states, got {} inputs",
            inputs.len()
        )));
    }
    let xt = inputs[0];
    let xs = xt.shape().to_vec();
    let (dirs, hs, gh) = (a.num_directions(), a.hidden, cell.gates() * a.hidden);
    let [seq, batch, isz] = match xs[..] {
        [s, b, i] if !a.batch_first => [s, b, i],
        [b, s, i] => [s, b, i],
        _ => return Err(bad(format!("expected a 3-D X, got {xs:?}"))),
    };
    let mut x = floats_of(xt, "recurrent op")?;
    let (w, r, b) =
        (floats_of(inputs[1], "W")?, floats_of(inputs[2], "R")?, floats_of(inputs[3], "B")?);
    let mut h0 = floats_of(inputs[4], "initial_h")?;
    let mut c0 = if lstm { floats_of(inputs[5], "initial_c")? } else { Vec::new() };
    let p = if lstm && inputs.len() > 6 { Some(floats_of(inputs[6], "P")?) } else { None };
    let state = dirs * batch * hs;
    let want = [
        (w.len(), dirs * gh * isz),
        (r.len(), dirs * gh * hs),
        (b.len(), dirs * 2 * gh),
        (h0.len(), state),
    ];
    if want.iter().any(|(have, want)| have != want)
        || (lstm && c0.len() != state)
        || a.activations.len() != dirs * cell.activation_count()
    {
        return Err(bad(
            "weights, bias, states or activations do not match the input and hidden size",
        ));
    }
    if a.batch_first {
        x = swap01(&x, batch, seq, isz);
        h0 = swap01(&h0, batch, dirs, hs);
        if lstm {
            c0 = swap01(&c0, batch, dirs, hs);
        }
    }
    let mut y = vec![0.0; seq * dirs * batch * hs];
    let mut yh = vec![0.0; state];
    let mut yc = vec![0.0; state];
    for dn in 0..dirs {
        let na = cell.activation_count();
        let d = Dir {
            w: &w[dn * gh * isz..(dn + 1) * gh * isz],
            r: &r[dn * gh * hs..(dn + 1) * gh * hs],
            wb: &b[dn * 2 * gh..dn * 2 * gh + gh],
            rb: &b[dn * 2 * gh + gh..(dn + 1) * 2 * gh],
            p: p.as_deref().map(|p| &p[dn * 3 * hs..(dn + 1) * 3 * hs]),
            acts: (0..na)
                .map(|k| {
                    let i = dn * na + k;
                    Act(a.activations[i], a.alphas[i] as f64, a.betas[i] as f64)
                })
                .collect(),
        };
        let reverse = a.direction == Direction::Reverse || dn == 1;
        for bi in 0..batch {
            let s0 = (dn * batch + bi) * hs;
            let mut h = h0[s0..s0 + hs].to_vec();
            let mut c = if lstm { c0[s0..s0 + hs].to_vec() } else { Vec::new() };
            for k in 0..seq {
                let t = if reverse { seq - 1 - k } else { k };
                let xv = &x[(t * batch + bi) * isz..(t * batch + bi + 1) * isz];
                let (hn, cn) = step(cell, a, &d, xv, &h, &c);
                h = hn;
                if lstm {
                    c = cn;
                }
                let yo = ((t * dirs + dn) * batch + bi) * hs;
                y[yo..yo + hs].copy_from_slice(&h);
            }
            yh[s0..s0 + hs].copy_from_slice(&h);
            if lstm {
                yc[s0..s0 + hs].copy_from_slice(&c);
            }
        }
    }
    let (y_shape, st_shape) = if a.batch_first {
        y = batch_first_y(&y, seq, dirs, batch, hs);
        yh = swap01(&yh, dirs, batch, hs);
        yc = swap01(&yc, dirs, batch, hs);
        (vec![batch, seq, dirs, hs], vec![batch, dirs, hs])
    } else {
        (vec![seq, dirs, batch, hs], vec![dirs, batch, hs])
    };
    let mut out = vec![float_like(xt, &y_shape, y)];
    if n_outputs > 1 {
        out.push(float_like(xt, &st_shape, yh));
    }
    if n_outputs > 2 {
        out.push(float_like(xt, &st_shape, yc));
    }
    Ok(out)
}
