//! Reverse-mode gradients over the float interpreter's ops.
//!
//! [`GradGraph`] runs a float [`Graph`] forward in f64 (through the interpreter's own kernels,
//! [`crate::eval_node`], node by node and unfused, keeping every activation), takes the mean
//! softmax cross-entropy of its first output `[N, classes]` against integer labels, and runs
//! the graph backward, op by op (`ops.rs`: elementwise, matrix, shape ops; `spatial.rs`: Conv
//! and the pools), giving the loss and d loss / d every float constant of the graph.
//!
//! Why: the worst-case device-variation search ([`crate::worst_case`]) needs the loss's
//! gradient with respect to the weights to find the variation pattern that hurts most.
//! Computing in f64 makes the gradients exact to ~1e-12, so finite differences check them
//! tightly, and a constant can be replaced ([`GradGraph::set_const`]) to take the gradient at
//! perturbed weights without rebuilding the graph.
//!
//! An op without a backward is an error naming the node and its op.

mod ops;
mod spatial;

use crate::error::{InterpError, Result};
use crate::tensor::Tensor;
use cimc_ir::{Graph, Node, ValueDef, ValueId};
use ndarray::{Array2, ArrayD, Axis, Ix2};

/// A float graph prepared for forward and backward runs in f64.
#[derive(Debug)]
pub struct GradGraph<'g> {
    graph: &'g Graph,
    /// Every constant of the graph, by value index (floats as f64).
    consts: Vec<Option<Tensor>>,
}

/// The result of [`GradGraph::loss_and_gradients`].
#[derive(Debug)]
pub struct Gradients {
    /// Mean softmax cross-entropy over the batch.
    pub loss: f64,
    /// The first output of the graph, `[N, classes]`.
    pub logits: Array2<f64>,
    /// d loss / d constant, for every float constant some node reads (by value id, in id
    /// order); a constant the loss does not depend on has a zero gradient.
    pub consts: Vec<(ValueId, ArrayD<f64>)>,
}

impl Gradients {
    /// The gradient of constant `v`, if it is a float constant of the graph.
    pub fn of(&self, v: ValueId) -> Option<&ArrayD<f64>> {
        self.consts
            .binary_search_by_key(&v.index(), |(id, _)| id.index())
            .ok()
            .map(|i| &self.consts[i].1)
    }
}

fn to_f64(t: Tensor) -> Tensor {
    match t {
        Tensor::F32(a) => Tensor::F64(a.mapv(f64::from)),
        other => other,
    }
}

pub(crate) fn node_err(node: &Node, msg: impl Into<String>) -> InterpError {
    InterpError::Node { node: node.name.clone(), op: node.op.name().into(), msg: msg.into() }
}

impl<'g> GradGraph<'g> {
    /// Prepares `graph`: its constants converted (floats to f64).
    pub fn new(graph: &'g Graph) -> Result<GradGraph<'g>> {
        let mut consts = vec![None; graph.value_count()];
        for (id, v) in graph.values() {
            if let ValueDef::Const(d) = &v.def {
                let t = Tensor::from_data(d)
                    .map_err(|e| InterpError::Internal(format!("constant '{}': {e}", v.name)))?;
                consts[id.index()] = Some(to_f64(t));
            }
        }
        Ok(GradGraph { graph, consts })
    }

    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// The current value of float constant `v` (as set by [`GradGraph::set_const`]).
    pub fn const_value(&self, v: ValueId) -> Option<&ArrayD<f64>> {
        match self.consts.get(v.index()) {
            Some(Some(Tensor::F64(a))) => Some(a),
            _ => None,
        }
    }

    /// Replaces float constant `v` by `a` (same shape) for the following runs.
    pub fn set_const(&mut self, v: ValueId, a: ArrayD<f64>) -> Result<()> {
        let name = &self.graph.value(v).name;
        match self.consts.get_mut(v.index()) {
            Some(Some(Tensor::F64(old))) if old.shape() == a.shape() => {
                *old = a;
                Ok(())
            }
            Some(Some(Tensor::F64(old))) => Err(InterpError::Input {
                name: name.clone(),
                msg: format!(
                    "shape {:?} given for a constant of shape {:?}",
                    a.shape(),
                    old.shape()
                ),
            }),
            _ => Err(InterpError::Input { name: name.clone(), msg: "not a float constant".into() }),
        }
    }

    /// Runs forward, keeping every value: the environment by value index.
    fn forward_env(&self, inputs: Vec<Tensor>) -> Result<Vec<Option<Tensor>>> {
        let g = self.graph;
        if inputs.len() != g.inputs().len() {
            return Err(InterpError::Input {
                name: "(all)".into(),
                msg: format!("the graph has {} inputs, {} given", g.inputs().len(), inputs.len()),
            });
        }
        let mut env: Vec<Option<Tensor>> = self.consts.clone();
        for (&v, t) in g.inputs().iter().zip(inputs) {
            let ty = g.ty(v);
            if t.shape() != ty.shape.as_slice() || !t.dtype().is_float() {
                return Err(InterpError::Input {
                    name: g.value(v).name.clone(),
                    msg: format!("expected a float {:?}, got {}", ty.shape, t.type_string()),
                });
            }
            env[v.index()] = Some(to_f64(t));
        }
        for (_, node) in g.nodes() {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|v| {
                    env[v.index()].as_ref().ok_or_else(|| {
                        node_err(node, format!("reads '{}', undefined", g.value(*v).name))
                    })
                })
                .collect::<Result<_>>()?;
            let outs = crate::eval_node(&node.op, &ins, node.outputs.len())
                .map_err(|e| crate::name_error(e, &node.name, &node.op))?;
            for (&o, t) in node.outputs.iter().zip(outs) {
                env[o.index()] = Some(t);
            }
        }
        Ok(env)
    }

    /// The first output, `[N, classes]`, of a forward run.
    fn logits_of(&self, env: &[Option<Tensor>]) -> Result<Array2<f64>> {
        let out = self.graph.outputs().first().ok_or_else(|| InterpError::Input {
            name: "(outputs)".into(),
            msg: "the graph has no output".into(),
        })?;
        match env[out.index()].as_ref() {
            Some(Tensor::F64(a)) if a.ndim() == 2 => {
                Ok(a.clone().into_dimensionality::<Ix2>().expect("invariant: ndim checked to be 2"))
            }
            Some(t) => Err(InterpError::Input {
                name: self.graph.value(*out).name.clone(),
                msg: format!("the loss needs float [N, classes] logits, got {}", t.type_string()),
            }),
            None => Err(InterpError::Internal("the output is not defined".into())),
        }
    }

    /// The first output `[N, classes]` on `inputs`, computed in f64.
    pub fn forward(&self, inputs: Vec<Tensor>) -> Result<Array2<f64>> {
        let env = self.forward_env(inputs)?;
        self.logits_of(&env)
    }

    /// The mean softmax cross-entropy of the first output against `labels` (one per sample),
    /// and its gradient with respect to every float constant.
    pub fn loss_and_gradients(&self, inputs: Vec<Tensor>, labels: &[i64]) -> Result<Gradients> {
        let g = self.graph;
        let env = self.forward_env(inputs)?;
        let logits = self.logits_of(&env)?;
        let (loss, dlogits) = cross_entropy(&logits, labels)?;
        // Which values need a gradient: float constants and values computed from something.
        let mut grads: Vec<Option<ArrayD<f64>>> = vec![None; g.value_count()];
        grads[g.outputs()[0].index()] = Some(dlogits.into_dyn());
        let is_input = {
            let mut m = vec![false; g.value_count()];
            for v in g.inputs() {
                m[v.index()] = true;
            }
            m
        };
        let ids = g.node_ids();
        for &id in ids.iter().rev() {
            let node = g.node(id);
            let dys: Vec<Option<&ArrayD<f64>>> =
                node.outputs.iter().map(|o| grads[o.index()].as_ref()).collect();
            if dys.iter().all(Option::is_none) {
                continue;
            }
            let need: Vec<bool> = node
                .inputs
                .iter()
                .map(|v| !is_input[v.index()] && matches!(env[v.index()], Some(Tensor::F64(_))))
                .collect();
            if !need.iter().any(|&n| n) {
                continue;
            }
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|v| env[v.index()].as_ref().expect("invariant: the forward run defined it"))
                .collect();
            let outs: Vec<&Tensor> = node
                .outputs
                .iter()
                .map(|v| env[v.index()].as_ref().expect("invariant: the forward run defined it"))
                .collect();
            let zero;
            let dy = match dys[0] {
                Some(d) => d,
                None => {
                    zero = ArrayD::zeros(outs[0].shape());
                    &zero
                }
            };
            let dxs = ops::backward(node, &ins, &outs, dy, &need)?;
            for (i, (&v, dx)) in node.inputs.iter().zip(dxs).enumerate() {
                let Some(dx) = dx.filter(|_| need[i]) else { continue };
                let dx =
                    if dx.is_standard_layout() { dx } else { dx.as_standard_layout().into_owned() };
                if dx.shape() != ins[i].shape() {
                    return Err(InterpError::Internal(format!(
                        "node '{}' ({}): a gradient has the wrong shape",
                        node.name,
                        node.op.name()
                    )));
                }
                match &mut grads[v.index()] {
                    Some(acc) => *acc += &dx,
                    slot => *slot = Some(dx),
                }
            }
        }
        let mut consts = Vec::new();
        let mut read = vec![false; g.value_count()];
        for (_, n) in g.nodes() {
            for v in &n.inputs {
                read[v.index()] = true;
            }
        }
        for (id, _) in g.values() {
            let i = id.index();
            if let (Some(Tensor::F64(a)), true) = (&self.consts[i], read[i]) {
                let gr = grads[i].take().unwrap_or_else(|| ArrayD::zeros(a.shape()));
                consts.push((id, gr));
            }
        }
        Ok(Gradients { loss, logits, consts })
    }
}

/// Mean softmax cross-entropy of `logits` `[N, C]` against `labels`, and its gradient
/// `(softmax − onehot) / N`.
pub fn cross_entropy(logits: &Array2<f64>, labels: &[i64]) -> Result<(f64, Array2<f64>)> {
    let (n, c) = logits.dim();
    if labels.len() != n {
        return Err(InterpError::Input {
            name: "labels".into(),
            msg: format!("{} labels for a batch of {n}", labels.len()),
        });
    }
    let mut d = Array2::zeros((n, c));
    let mut loss = 0.0;
    for (i, (row, &y)) in logits.axis_iter(Axis(0)).zip(labels).enumerate() {
        if y < 0 || y as usize >= c {
            return Err(InterpError::Input {
                name: "labels".into(),
                msg: format!("label {y} of sample {i} is outside 0..{c}"),
            });
        }
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|&z| (z - m).exp()).sum();
        loss += m + s.ln() - row[y as usize];
        for j in 0..c {
            d[[i, j]] = (row[j] - m).exp() / s / n as f64;
        }
        d[[i, y as usize]] -= 1.0 / n as f64;
    }
    Ok((loss / n as f64, d))
}
