//! The first-order search: the loss gradient with respect to every cell's ε on the float
//! surrogate, the FGSM pattern `ε = k·sign(∂L/∂ε)`, projected sign-gradient steps (PGD), and
//! the reference patterns (random ±k signs, Gaussian draws).
//!
//! The loss is the mean softmax cross-entropy of the batch (maximized). A batch larger than
//! the graph's static batch runs in chunks of it; its size must be a multiple of it.

use super::{hash64, normal, Layer, Pattern};
use cimc_backends::program::Program;
use cimc_interp::grad::GradGraph;
use cimc_interp::tensor::{argmax, top1_percent, Tensor};
use cimc_interp::{InterpError, Result};
use cimc_ir::Graph;
use ndarray::{ArrayD, Axis};

/// The loss of a pattern on the surrogate, its top-1 hits, and (when asked) ∂L/∂ε per cell.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub correct: usize,
    pub samples: usize,
    /// As [`Pattern::eps`]; empty when not asked for.
    pub grad: Vec<Vec<f64>>,
}

impl Evaluation {
    pub fn top1(&self) -> f64 {
        top1_percent(self.correct, self.samples)
    }
}

/// The float surrogate of a crossbar program, ready for searches.
pub struct Search<'g> {
    grad: GradGraph<'g>,
    pub layers: Vec<Layer>,
    /// `σ_p`, the relative programming variation of one cell.
    pub sigma: f64,
    batch: usize,
}

impl<'g> Search<'g> {
    /// Ties `program`'s crossbar layers to `graph` (see [`super::layers`]).
    pub fn new(graph: &'g Graph, program: &Program, sigma: f64) -> Result<Search<'g>> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(InterpError::Input {
                name: "sigma".into(),
                msg: format!("σ must be a finite number ≥ 0, got {sigma}"),
            });
        }
        let layers = super::layers(program, graph)?;
        let batch =
            graph.inputs().first().and_then(|&v| graph.ty(v).shape.first().copied()).ok_or_else(
                || InterpError::Input {
                    name: "(inputs)".into(),
                    msg: "the float graph needs one input [N, ...]".into(),
                },
            )?;
        Ok(Search { grad: GradGraph::new(graph)?, layers, sigma, batch })
    }

    /// The graph's static batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sets the surrogate's weights to `s_w·w_eff(pattern)` and its biases to the program's.
    fn apply(&mut self, p: &Pattern) -> Result<()> {
        for (l, eps) in self.layers.iter().zip(&p.eps) {
            let cpw = l.cells_per_weight();
            let shape = self.grad.graph().ty(l.weight).shape.clone();
            let mut w = ArrayD::<f64>::zeros(shape);
            let wd = w.as_slice_mut().expect("invariant: a new array is contiguous");
            for n in 0..l.n {
                for k in 0..l.k {
                    let base = (n * l.k + k) * cpw;
                    let code: f64 = l
                        .cells(k, n)
                        .enumerate()
                        .map(|(c, (_, _, v))| v * (1.0 + self.sigma * eps[base + c] as f64))
                        .sum();
                    wd[l.float_index(k, n)] = l.scale[n] * (code + l.constant(k, n));
                }
            }
            self.grad.set_const(l.weight, w)?;
            if let Some(b) = l.bias {
                let shape = self.grad.graph().ty(b).shape.clone();
                let arr = ArrayD::from_shape_vec(shape, l.bias_real.clone())
                    .expect("invariant: layers() checked one bias per output");
                self.grad.set_const(b, arr)?;
            }
        }
        Ok(())
    }

    /// The surrogate's first output under pattern `p` (one run of the graph's batch).
    pub fn surrogate_logits(&mut self, p: &Pattern, x: &Tensor) -> Result<ndarray::Array2<f64>> {
        self.apply(p)?;
        self.grad.forward(vec![x.clone()])
    }

    fn chunks<'a>(&self, x: &'a Tensor, y: &'a [i64]) -> Result<Vec<(Tensor, &'a [i64])>> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 || n % self.batch != 0 || y.len() != n {
            return Err(InterpError::Input {
                name: "batch".into(),
                msg: format!(
                    "{n} samples and {} labels: need a multiple of the graph's batch {}",
                    y.len(),
                    self.batch
                ),
            });
        }
        Ok((0..n / self.batch)
            .map(|c| {
                let (a, b) = (c * self.batch, (c + 1) * self.batch);
                let t = match x {
                    Tensor::F32(v) => Tensor::F32(v.slice_axis(Axis(0), (a..b).into()).to_owned()),
                    Tensor::F64(v) => Tensor::F64(v.slice_axis(Axis(0), (a..b).into()).to_owned()),
                    other => other.clone(),
                };
                (t, &y[a..b])
            })
            .collect())
    }

    /// The surrogate's loss and top-1 under pattern `p` on `(x, y)`, with ∂L/∂ε when
    /// `with_grad`.
    pub fn evaluate(
        &mut self,
        p: &Pattern,
        x: &Tensor,
        y: &[i64],
        with_grad: bool,
    ) -> Result<Evaluation> {
        self.apply(p)?;
        let chunks = self.chunks(x, y)?;
        let n_all = y.len() as f64;
        let mut ev = Evaluation { loss: 0.0, correct: 0, samples: y.len(), grad: Vec::new() };
        let mut gw: Vec<ArrayD<f64>> = Vec::new();
        for (xc, yc) in chunks {
            let w = yc.len() as f64 / n_all;
            let logits = if with_grad {
                let g = self.grad.loss_and_gradients(vec![xc], yc)?;
                ev.loss += w * g.loss;
                for (i, l) in self.layers.iter().enumerate() {
                    let d = g.of(l.weight).ok_or_else(|| {
                        InterpError::Internal(format!("no gradient for '{}'", l.origin))
                    })?;
                    match gw.get_mut(i) {
                        Some(acc) => acc.scaled_add(w, d),
                        None => gw.push(d * w),
                    }
                }
                g.logits
            } else {
                let logits = self.grad.forward(vec![xc])?;
                ev.loss += w * cimc_interp::grad::cross_entropy(&logits, yc)?.0;
                logits
            };
            ev.correct += logits
                .axis_iter(Axis(0))
                .zip(yc)
                .filter(|(row, &t)| argmax(row.iter().copied()) as i64 == t)
                .count();
        }
        if with_grad {
            ev.grad = self
                .layers
                .iter()
                .zip(&gw)
                .map(|(l, g)| {
                    let gd = g.as_slice().expect("invariant: gradients are contiguous");
                    let cpw = l.cells_per_weight();
                    let mut out = vec![0.0; l.k * l.n * cpw];
                    for n in 0..l.n {
                        for k in 0..l.k {
                            let gk = gd[l.float_index(k, n)] * l.scale[n] * self.sigma;
                            for (c, (_, _, v)) in l.cells(k, n).enumerate() {
                                out[(n * l.k + k) * cpw + c] = gk * v;
                            }
                        }
                    }
                    out
                })
                .collect();
        }
        Ok(ev)
    }

    /// The FGSM pattern `ε = k·sign(∂L/∂ε)` at no variation, and the evaluation it came from.
    pub fn fgsm(&mut self, x: &Tensor, y: &[i64], k: f64) -> Result<(Pattern, Evaluation)> {
        let zero = Pattern::zeros(&self.layers);
        let ev = self.evaluate(&zero, x, y, true)?;
        let mut p = zero;
        step_sign(&mut p, &ev.grad, 2.0 * k, k);
        Ok((p, ev))
    }

    /// PGD: from `start`, `steps` projected sign-gradient steps of size `alpha`
    /// (`ε ← clip(ε + α·sign(∂L/∂ε), −k, k)`), each at the gradient of the current pattern.
    /// Returns every iterate's evaluation (loss, top-1) and the pattern with the lowest
    /// surrogate top-1 (highest loss among equals), `start` included.
    pub fn pgd(
        &mut self,
        x: &Tensor,
        y: &[i64],
        start: Pattern,
        k: f64,
        steps: usize,
        alpha: f64,
    ) -> Result<(Pattern, Vec<Evaluation>)> {
        let mut cur = start;
        let mut best = (cur.clone(), usize::MAX, f64::NEG_INFINITY);
        let mut trace = Vec::with_capacity(steps + 1);
        for it in 0..=steps {
            let ev = self.evaluate(&cur, x, y, it < steps)?;
            if (ev.correct, -ev.loss) < (best.1, -best.2) {
                best = (cur.clone(), ev.correct, ev.loss);
            }
            if it < steps {
                step_sign(&mut cur, &ev.grad, alpha, k);
            }
            trace.push(Evaluation { grad: Vec::new(), ..ev });
        }
        Ok((best.0, trace))
    }

    /// The first-order prediction of the loss change from `from` to `to`: `Σ ∂L/∂ε·Δε` with
    /// the gradient of `from` (its `grad` must be filled).
    pub fn predicted_change(grad: &[Vec<f64>], from: &Pattern, to: &Pattern) -> f64 {
        let mut s = 0.0;
        for ((g, a), b) in grad.iter().zip(&from.eps).zip(&to.eps) {
            for ((gi, ai), bi) in g.iter().zip(a).zip(b) {
                s += gi * (*bi as f64 - *ai as f64);
            }
        }
        s
    }
}

/// `ε ← clip(ε + α·sign(g), −k, k)`; a cell with zero gradient (an empty cell) keeps its ε.
pub fn step_sign(p: &mut Pattern, grad: &[Vec<f64>], alpha: f64, k: f64) {
    for (e, g) in p.eps.iter_mut().zip(grad) {
        for (ei, gi) in e.iter_mut().zip(g) {
            if *gi != 0.0 {
                *ei = (*ei as f64 + alpha * gi.signum()).clamp(-k, k) as f32;
            }
        }
    }
}

/// A pattern of random signs, `ε = ±k` (seeded; independent of threads).
pub fn random_sign(layers: &[Layer], k: f64, seed: u64) -> Pattern {
    let mut p = Pattern::zeros(layers);
    for (i, e) in p.eps.iter_mut().enumerate() {
        for (j, v) in e.iter_mut().enumerate() {
            let bit = hash64(seed, i as u64 + 1, j as u64) >> 63;
            *v = if bit == 1 { k as f32 } else { -k as f32 };
        }
    }
    p
}

/// A pattern of independent `N(0, 1)` draws, the mean case (seeded; independent of threads).
pub fn gaussian(layers: &[Layer], seed: u64) -> Pattern {
    let mut p = Pattern::zeros(layers);
    for (i, e) in p.eps.iter_mut().enumerate() {
        for (j, v) in e.iter_mut().enumerate() {
            *v = normal(seed, 1000 + i as u64, j as u64) as f32;
        }
    }
    p
}
