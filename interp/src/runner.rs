//! [`Runner`]: a graph prepared for repeated runs.
//!
//! Preparation turns the graph into a list of steps over numbered slots: constants are
//! converted to tensors once; convolutions with constant weights are prepared once
//! ([`PreparedConv`]); a Conv whose only reader is a BatchNorm with constant parameters and/or
//! an activation (Relu, Clip with constant bounds, LeakyRelu, Sigmoid, HardSigmoid, HardSwish,
//! Tanh) is fused with them (the same arithmetic as unfused, applied while the output is in
//! cache). Running keeps only live tensors: each is dropped after its last reader, and an
//! input read for the last time by an elementwise or reshaping op is updated in place.

use crate::buffer_pool::BufferPool;
use crate::error::{InterpError, Result};
use crate::format::Precision;
use crate::name_error;
use crate::ops::activation::{self, bn_coefficients, Act};
use crate::ops::conv::{ConvSource, Epilogue, PreparedConv};
use crate::ops::num::{Elem, Float};
use crate::ops::{self, elementwise, shape, unary};
use crate::tensor::Tensor;
use cimc_ir::{ConvAttrs, Graph, NodeId, Op, TensorType, ValueDef, ValueId};

/// Where a value lives while running.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Const(usize),
    Dyn(usize),
    /// A large constant of a lean runner, converted each time a step reads it
    /// ([`Runner::lean`]): an index into `Runner::at_use`.
    AtUse(usize),
}

/// Constants of at least this many bytes are converted at each use by a lean runner (the
/// weights of a transformer's Gemm/MatMul layers; smaller ones are converted once).
const AT_USE_BYTES: usize = 1 << 20;

#[derive(Debug)]
enum Kind {
    /// Any op, through the generic kernels.
    Generic,
    ConvF32(Box<PreparedConv<f32>>, Epilogue<f32>),
    ConvF64(Box<PreparedConv<f64>>, Epilogue<f64>),
    /// An f32 convolution of a lean runner: prepared from the graph's data (shared, not
    /// copied) each time it runs.
    ConvAtUse(Box<ConvSource>, Epilogue<f32>),
    /// An f32 MatMul/Gemm with constant weights on the packed kernel (`ops/gemm_packed.rs`).
    Dense(Box<Dense>),
}

/// A product with constant weights, packed at build time.
#[derive(Debug)]
struct Dense {
    w: crate::ops::gemm_packed::PackedWeights,
    /// Gemm's bias `C`, one row broadcast over the output's rows.
    bias: Option<Vec<f32>>,
    /// Gemm's fused clamp.
    clamp: Option<(f32, f32)>,
    /// Output rows.
    m: usize,
}

#[derive(Debug)]
struct Step {
    /// The node's name (for a fused chain, the convolution's).
    name: String,
    op: Op,
    /// The mnemonics of the ops run, `+`-joined (several for a fused chain).
    ops: String,
    kind: Kind,
    inputs: Vec<Slot>,
    outputs: Vec<usize>,
    /// The graph's types of the outputs, checked after the step.
    out_types: Vec<TensorType>,
    /// Dynamic slots read for the last time here (or never read): dropped after the step.
    free: Vec<usize>,
    /// An input position whose tensor may be taken and updated in place.
    own: Option<usize>,
}

/// The wall time of one step of a profiled run.
#[derive(Clone, Debug)]
pub struct StepTime {
    /// The node's name (the convolution's, for a fused chain).
    pub node: String,
    /// The mnemonics of the ops the step ran, e.g. `conv+batch_norm+relu`.
    pub ops: String,
    pub time: std::time::Duration,
}

/// A graph prepared for repeated runs.
#[derive(Debug)]
pub struct Runner {
    consts: Vec<Tensor>,
    /// A lean runner's large constants, shared with the graph (not copied), converted at use.
    at_use: Vec<cimc_ir::TensorData>,
    steps: Vec<Step>,
    n_dyn: usize,
    /// Graph inputs: slot, name, type.
    inputs: Vec<(usize, String, TensorType)>,
    outputs: Vec<Slot>,
    /// Per dynamic slot, its index among the watched values ([`Runner::lean_watching`]).
    watch: Vec<Option<usize>>,
    /// The number formats of weights, activations and accumulation (`format.rs`); fp32 for
    /// [`Runner::new`].
    precision: Precision,
    /// Activation buffers kept from one run for the next: a run's first convolutions then
    /// write into memory that is already mapped (the first layer's output alone is 800 pages
    /// at 224x224), instead of faulting it in on every image.
    pool: std::sync::Mutex<BufferPool>,
}

/// The activation an op applies, if it is a fusable one (Clip needs constant bounds).
fn fusable_act(g: &Graph, op: &Op, inputs: &[ValueId]) -> Option<Act> {
    if let Some(a) = ops::activation_of(op) {
        return Some(a);
    }
    if *op != Op::Clip || inputs.is_empty() {
        return None;
    }
    let bound = |i: usize, default: f64| -> Option<f64> {
        match inputs.get(i) {
            None => Some(default),
            Some(&v) => {
                let d = g.value(v).const_data()?;
                (d.numel() == 1).then(|| d.get_f64(0))
            }
        }
    };
    Some(Act::Clip(bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?))
}

impl Runner {
    /// Prepares `graph`: checks that every value read is defined, converts the constants and
    /// prepares the convolutions. Fails on a node whose constant operands are malformed.
    pub fn new(graph: &Graph) -> Result<Runner> {
        Self::build(graph, true, false, true, &[])
    }

    /// A runner for a few runs of a large graph in little memory: as [`Runner::new`] (same
    /// checks, same numbers), but each f32 convolution's weights are converted only while it
    /// runs and dropped after, so the runner holds no copy of the model's weights — one layer's
    /// at a time (`docs/compile-memory.md`). Each run converts them again.
    pub fn lean(graph: &Graph) -> Result<Runner> {
        Self::build(graph, true, true, false, &[])
    }

    /// A lean runner ([`Runner::lean`]) that hands the values `watched` to
    /// [`Runner::run_watching`]'s callback as soon as they are computed, instead of keeping
    /// them to the end as graph outputs would be kept: calibration observes every activation of
    /// a large graph with only the live ones in memory. The values are computed as they would
    /// be as graph outputs (a watched value is never fused away).
    pub fn lean_watching(graph: &Graph, watched: &[ValueId]) -> Result<Runner> {
        Self::build(graph, true, true, false, watched)
    }

    /// A runner computing in the reduced formats of `precision` (`docs/approximate.md`): every
    /// f32 constant of the graph (the weights, biases and normalization parameters the model
    /// stores) is rounded once to `precision.weights`; the graph's inputs and every f32 tensor an
    /// op produces to `precision.activations` (no fusion then, so every op's output is one);
    /// Conv, Gemm and MatMul accumulate in `precision.accumulation` (a slower loop,
    /// `ops/rounded_acc.rs`). All fp32 is [`Runner::new`].
    pub fn with_precision(graph: &Graph, precision: Precision) -> Result<Runner> {
        if precision.is_fp32() {
            return Self::new(graph);
        }
        let mut g = graph.clone();
        if !precision.weights.is_fp32() {
            crate::precision::round_constants(&mut g, precision.weights);
        }
        // Products keep the generic kernels, which round accumulations (no packing).
        let mut r = Self::build(&g, precision.activations.is_fp32(), false, false, &[])?;
        r.precision = precision;
        Ok(r)
    }

    /// `pack`: products with constant weights on the packed kernel ([`Kind::Dense`]).
    fn build(
        graph: &Graph,
        fuse: bool,
        lean: bool,
        pack: bool,
        watched: &[ValueId],
    ) -> Result<Runner> {
        let mut b = Builder::new(graph, lean, watched);
        for pos in 0..b.ids.len() {
            if !b.fused_away[pos] {
                b.add_step(pos, fuse, lean, pack)?;
            }
        }
        let mut outputs = Vec::with_capacity(graph.outputs().len());
        for &v in graph.outputs() {
            match b.const_slot(v)? {
                Some(s) => outputs.push(s),
                None => {
                    return Err(InterpError::Internal(format!(
                        "graph output '{}' is not defined",
                        graph.value(v).name
                    )))
                }
            }
        }
        plan_lifetimes(&mut b.steps, &outputs, b.n_dyn);
        let mut watch = vec![None; b.n_dyn];
        for (k, &v) in watched.iter().enumerate() {
            match b.slot[v.index()] {
                Some(Slot::Dyn(d)) => watch[d] = Some(k),
                _ => {
                    return Err(InterpError::Internal(format!(
                        "watched value '{}' is not computed by a step",
                        graph.value(v).name
                    )))
                }
            }
        }
        Ok(Runner {
            consts: b.consts,
            at_use: b.at_use,
            steps: b.steps,
            n_dyn: b.n_dyn,
            inputs: b.inputs,
            outputs,
            watch,
            precision: Precision::default(),
            pool: Default::default(),
        })
    }

    /// Runs the graph on `inputs` (in graph-input order), returning the graph's outputs in
    /// order. Each input's dtype and shape must match the graph's.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        in_pool(|| self.run_inner(inputs, None, None))
    }

    /// Like [`Runner::run`], calling `watch(k, value)` with the `k`-th watched value of
    /// [`Runner::lean_watching`] as soon as it is computed (graph inputs first).
    pub fn run_watching(
        &self,
        inputs: Vec<Tensor>,
        watch: &mut (dyn FnMut(usize, &Tensor) + Send),
    ) -> Result<Vec<Tensor>> {
        in_pool(|| self.run_inner(inputs, None, Some(watch)))
    }

    fn run_inner(
        &self,
        inputs: Vec<Tensor>,
        mut times: Option<&mut Vec<StepTime>>,
        mut watch: Option<&mut (dyn FnMut(usize, &Tensor) + Send)>,
    ) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(InterpError::Input {
                name: "(all)".into(),
                msg: format!("the graph has {} inputs, {} given", self.inputs.len(), inputs.len()),
            });
        }
        // Taken, not held: concurrent runs each start from what is there (possibly nothing).
        let mut pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()));
        let mut env: Vec<Option<Tensor>> = Vec::with_capacity(self.n_dyn);
        env.resize_with(self.n_dyn, || None);
        for ((slot, name, ty), t) in self.inputs.iter().zip(inputs) {
            if t.dtype() != ty.dtype || t.shape() != ty.shape.as_slice() {
                return Err(InterpError::Input {
                    name: name.clone(),
                    msg: format!("expected {}{:?}, got {}", ty.dtype, ty.shape, t.type_string()),
                });
            }
            env[*slot] = Some(crate::precision::round_tensor(t, self.precision.activations));
            if let (Some(w), Some(k), Some(t)) = (watch.as_mut(), self.watch[*slot], &env[*slot]) {
                w(k, t);
            }
        }
        for step in &self.steps {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            let outs = self
                .exec(step, &mut env, &mut pool)
                .map_err(|e| name_error(e, &step.name, &step.op))?;
            if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                t.push(StepTime {
                    node: step.name.clone(),
                    ops: step.ops.clone(),
                    time: start.elapsed(),
                });
            }
            if outs.len() < step.outputs.len() {
                return Err(InterpError::Internal(format!(
                    "node '{}' produced {} outputs, the graph has {}",
                    step.name,
                    outs.len(),
                    step.outputs.len()
                )));
            }
            for ((t, &s), ty) in outs.into_iter().zip(&step.outputs).zip(&step.out_types) {
                if t.dtype() != ty.dtype || t.shape() != ty.shape.as_slice() {
                    return Err(InterpError::Node {
                        node: step.name.clone(),
                        op: step.op.name().into(),
                        msg: format!(
                            "produced {}, the graph says {}{:?}",
                            t.type_string(),
                            ty.dtype,
                            ty.shape
                        ),
                    });
                }
                env[s] = Some(crate::precision::round_tensor(t, self.precision.activations));
                if let (Some(w), Some(k), Some(t)) = (watch.as_mut(), self.watch[s], &env[s]) {
                    w(k, t);
                }
            }
            for &s in &step.free {
                if let Some(Tensor::F32(a)) = env[s].take() {
                    pool.put(a);
                }
            }
        }
        let outs = self
            .outputs
            .iter()
            .map(|s| match *s {
                Slot::Const(c) => Ok(self.consts[c].clone()),
                Slot::AtUse(i) => Tensor::from_data(&self.at_use[i]),
                Slot::Dyn(d) => env[d]
                    .clone()
                    .ok_or_else(|| InterpError::Internal("an output was freed".into())),
            })
            .collect();
        for t in env.into_iter().flatten() {
            if let Tensor::F32(a) = t {
                pool.put(a);
            }
        }
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = pool;
        outs
    }

    /// Like [`Runner::run`], also returning the wall time of every step: the node's name (for
    /// a fused chain, the convolution's), the mnemonics of the ops it ran, and the time.
    pub fn run_profiled(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<StepTime>)> {
        let mut times = Vec::with_capacity(self.steps.len());
        let out = in_pool(|| self.run_inner(inputs, Some(&mut times), None))?;
        Ok((out, times))
    }

    fn exec(
        &self,
        step: &Step,
        env: &mut [Option<Tensor>],
        pool: &mut BufferPool,
    ) -> Result<Vec<Tensor>> {
        let owned = match (step.own, step.own.map(|i| step.inputs[i])) {
            (Some(i), Some(Slot::Dyn(s))) => env[s].take().map(|t| (i, t)),
            _ => None,
        };
        // A lean runner's large constants, converted for this step only.
        let converted: Vec<Option<Tensor>> = step
            .inputs
            .iter()
            .map(|s| match *s {
                Slot::AtUse(i) => Tensor::from_data(&self.at_use[i]).map(Some),
                Slot::Const(_) | Slot::Dyn(_) => Ok(None),
            })
            .collect::<Result<_>>()?;
        let get = |j: usize, s: &Slot| -> Result<&Tensor> {
            match *s {
                Slot::Const(c) => Ok(&self.consts[c]),
                Slot::Dyn(d) => env[d]
                    .as_ref()
                    .ok_or_else(|| InterpError::Internal("a freed value is read".into())),
                Slot::AtUse(_) => converted[j]
                    .as_ref()
                    .ok_or_else(|| InterpError::Internal("a constant was not converted".into())),
            }
        };
        let n_out = step.outputs.len();
        if let Some((i, t)) = owned {
            let rest: Vec<&Tensor> = step
                .inputs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, s)| get(j, s))
                .collect::<Result<_>>()?;
            return eval_owned(&step.op, i, t, &rest, n_out);
        }
        let ins: Vec<&Tensor> =
            step.inputs.iter().enumerate().map(|(j, s)| get(j, s)).collect::<Result<_>>()?;
        let acc = self.precision.accumulation;
        if !acc.is_fp32() {
            match (&step.kind, ins.first()) {
                (Kind::ConvF32(pc, epi), Some(Tensor::F32(x))) => {
                    return Ok(vec![Tensor::F32(pc.run_rounded_acc(x, epi, acc)?)]);
                }
                (Kind::Generic, _) => {
                    if let Some(out) = crate::precision::rounded_acc_op(&step.op, &ins, acc) {
                        return out;
                    }
                }
                _ => return Err(ops::unsupported("a reduced accumulation format on f64 data")),
            }
        }
        match &step.kind {
            Kind::Generic => ops::eval(&step.op, &ins, n_out),
            Kind::ConvF32(pc, epi) => match ins.first() {
                Some(Tensor::F32(x)) => {
                    let out = pool.take(pc.out_len(x.shape())?);
                    Ok(vec![Tensor::F32(pc.run_into(x, epi, out)?)])
                }
                _ => Err(ops::bad("conv input dtype differs from weights")),
            },
            Kind::ConvF64(pc, epi) => match ins.first() {
                Some(Tensor::F64(x)) => Ok(vec![Tensor::F64(pc.run(x, epi)?)]),
                _ => Err(ops::bad("conv input dtype differs from weights")),
            },
            Kind::Dense(d) => match ins.first() {
                Some(Tensor::F32(x)) if x.len() == d.m * d.w.k => {
                    let x = ops::data_of(x);
                    let mut y = pool.take(d.m * d.w.n);
                    d.w.run(&x, d.m, d.bias.as_deref(), &mut y);
                    let shape = &step.out_types[0].shape;
                    let y = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), y)
                        .map_err(|e| InterpError::Internal(format!("dense output: {e}")))?;
                    Ok(vec![ops::clamped(Tensor::F32(y), d.clamp)])
                }
                _ => Err(ops::bad("product input differs from its prepared shape")),
            },
            Kind::ConvAtUse(src, epi) => match ins.first() {
                Some(Tensor::F32(x)) => {
                    let pc = src.prepare()?;
                    let out = pool.take(pc.out_len(x.shape())?);
                    Ok(vec![Tensor::F32(pc.run_into(x, epi, out)?)])
                }
                _ => Err(ops::bad("conv input dtype differs from weights")),
            },
        }
    }
}

/// The state of [`Runner::build`]: where each value lives, and the steps made so far.
struct Builder<'g> {
    graph: &'g Graph,
    /// The nodes in execution order; a position in it is a node's `pos`.
    ids: Vec<NodeId>,
    slot: Vec<Option<Slot>>,
    consts: Vec<Tensor>,
    /// Constants converted at use (lean runners only).
    at_use: Vec<cimc_ir::TensorData>,
    lean: bool,
    n_dyn: usize,
    /// Graph inputs: slot, name, type.
    inputs: Vec<(usize, String, TensorType)>,
    /// Readers of each value (node inputs).
    readers: Vec<usize>,
    is_output: Vec<bool>,
    /// Nodes run as part of an earlier step (a fused chain).
    fused_away: Vec<bool>,
    steps: Vec<Step>,
}

/// A convolution prepared at build time, and the chain fused after it.
struct PreparedKind {
    kind: Kind,
    /// Arena positions of the fused BatchNorm and/or activation.
    chain: Vec<usize>,
    /// The value the chain's last op defines.
    chain_out: Option<ValueId>,
}

impl<'g> Builder<'g> {
    fn new(graph: &'g Graph, lean: bool, watched: &[ValueId]) -> Builder<'g> {
        let nv = graph.value_count();
        let mut slot: Vec<Option<Slot>> = vec![None; nv];
        let mut inputs = Vec::new();
        for (n_dyn, &v) in graph.inputs().iter().enumerate() {
            let val = graph.value(v);
            slot[v.index()] = Some(Slot::Dyn(n_dyn));
            inputs.push((n_dyn, val.name.clone(), val.ty.clone()));
        }
        let mut readers = vec![0usize; nv];
        for (_, n) in graph.nodes() {
            for &v in &n.inputs {
                readers[v.index()] += 1;
            }
        }
        let mut is_output = vec![false; nv];
        // Watched values are kept whole as outputs are (never fused away).
        for &v in graph.outputs().iter().chain(watched) {
            is_output[v.index()] = true;
        }
        let ids = graph.node_ids();
        Builder {
            graph,
            fused_away: vec![false; ids.len()],
            steps: Vec::with_capacity(ids.len()),
            ids,
            slot,
            consts: Vec::new(),
            at_use: Vec::new(),
            lean,
            n_dyn: inputs.len(),
            inputs,
            readers,
            is_output,
        }
    }

    /// The slot of `v`, converting it to a tensor of the runner when it is a constant seen for
    /// the first time; `None` when nothing defines it yet.
    fn const_slot(&mut self, v: ValueId) -> Result<Option<Slot>> {
        if let Some(s) = self.slot[v.index()] {
            return Ok(Some(s));
        }
        let graph = self.graph;
        if let ValueDef::Const(d) = &graph.value(v).def {
            let t = Tensor::from_data(d).map_err(|e| {
                InterpError::Internal(format!("constant '{}': {e}", graph.value(v).name))
            })?;
            if self.lean && d.raw().len() >= AT_USE_BYTES {
                // Checked above; the copy is dropped here.
                self.at_use.push(d.clone());
                let s = Slot::AtUse(self.at_use.len() - 1);
                self.slot[v.index()] = Some(s);
                return Ok(Some(s));
            }
            self.consts.push(t);
            let s = Slot::Const(self.consts.len() - 1);
            self.slot[v.index()] = Some(s);
            return Ok(Some(s));
        }
        Ok(None)
    }

    /// The step of the node at `pos` (with the chain fused after it, for a convolution).
    fn add_step(&mut self, pos: usize, fuse: bool, lean: bool, pack: bool) -> Result<()> {
        let graph = self.graph;
        let node = graph.node(self.ids[pos]);
        let prepared = match run_as(&node.op) {
            RunAs::Conv(attrs) => self.prepare_conv(pos, attrs, fuse, lean)?,
            RunAs::InPlace(_) | RunAs::Generic if pack => self.prepare_dense(pos),
            RunAs::InPlace(_) | RunAs::Generic => None,
        };
        let reads: &[ValueId] = if prepared.is_none() { &node.inputs } else { &node.inputs[..1] };
        let mut in_slots = Vec::with_capacity(reads.len());
        for &v in reads {
            match self.const_slot(v)? {
                Some(s) => in_slots.push(s),
                None => {
                    return Err(InterpError::Node {
                        node: node.name.clone(),
                        op: node.op.name().into(),
                        msg: format!(
                            "reads '{}', which nothing defines before it",
                            graph.value(v).name
                        ),
                    })
                }
            }
        }
        let mut last_outputs = node.outputs.clone();
        let mut ops = node.op.name().to_string();
        let kind = match prepared {
            None => Kind::Generic,
            Some(p) => {
                for &q in &p.chain {
                    self.fused_away[q] = true;
                    ops = format!("{ops}+{}", graph.node(self.ids[q]).op.name());
                }
                if let Some(o) = p.chain_out {
                    last_outputs = vec![o];
                }
                p.kind
            }
        };
        let mut outputs = Vec::with_capacity(last_outputs.len());
        for &o in &last_outputs {
            self.slot[o.index()] = Some(Slot::Dyn(self.n_dyn));
            outputs.push(self.n_dyn);
            self.n_dyn += 1;
        }
        self.steps.push(Step {
            name: node.name.clone(),
            op: node.op.clone(),
            ops,
            kind,
            inputs: in_slots,
            outputs,
            out_types: last_outputs.iter().map(|&o| graph.ty(o).clone()).collect(),
            free: Vec::new(),
            own: None,
        });
        Ok(())
    }

    /// An f32 MatMul of constant 2-D weights, or a Gemm of constant weights (alpha 1, A not
    /// transposed, a constant bias row with beta 1 or none), whose product takes the `gemm`
    /// crate's general path: packed here for the packed kernel, which gives the same numbers.
    fn prepare_dense(&self, pos: usize) -> Option<PreparedKind> {
        use crate::ops::gemm_packed::{applies, PackedWeights};
        let g = self.graph;
        let node = g.node(self.ids[pos]);
        let f32_const = |i: usize| {
            let v = *node.inputs.get(i)?;
            let d = g.value(v).const_data()?;
            (d.dtype() == cimc_ir::DType::F32).then_some(d)
        };
        let w = f32_const(1)?;
        let x_ty = g.ty(node.inputs[0]);
        if node.outputs.len() != 1 || x_ty.dtype != cimc_ir::DType::F32 || w.shape().len() != 2 {
            return None;
        }
        let (transposed, bias, clamp) = match &node.op {
            Op::MatMul if x_ty.shape.len() >= 2 && node.inputs.len() == 2 => (false, None, None),
            Op::Gemm { alpha, beta, trans_a: false, trans_b, clamp }
                if *alpha == 1.0 && x_ty.shape.len() == 2 =>
            {
                let bias = match node.inputs.len() {
                    2 => None,
                    3 if *beta == 1.0 => Some(f32_const(2)?),
                    _ => return None,
                };
                (*trans_b, bias, *clamp)
            }
            _ => return None,
        };
        let (k, n) =
            if transposed { (w.shape()[1], w.shape()[0]) } else { (w.shape()[0], w.shape()[1]) };
        let k_x = *x_ty.shape.last()?;
        let m = x_ty.numel() / k_x.max(1);
        if k_x != k || !applies(m, k, n) {
            return None;
        }
        let bias = match bias {
            Some(b) if b.numel() == n && b.shape().last().is_some_and(|&d| d == n) => {
                Some(b.to_f32_vec())
            }
            Some(_) => return None,
            None => None,
        };
        let packed = PackedWeights::new(&w.to_f32_vec(), k, n, transposed);
        Some(PreparedKind {
            kind: Kind::Dense(Box::new(Dense { w: packed, bias, clamp, m })),
            chain: Vec::new(),
            chain_out: None,
        })
    }

    /// A convolution with constant weights (and bias) is prepared here, its weights converted
    /// straight from the graph's data (not kept as constants of the runner), with the
    /// BatchNorm and/or activation after it fused when `fuse`. `None` when it runs through the
    /// generic kernel (weights computed by the graph, several outputs, an integer dtype).
    fn prepare_conv(
        &self,
        pos: usize,
        attrs: &ConvAttrs,
        fuse: bool,
        lean: bool,
    ) -> Result<Option<PreparedKind>> {
        let graph = self.graph;
        let node = graph.node(self.ids[pos]);
        let named = |e| name_error(e, &node.name, &node.op);
        let data = |i: usize| node.inputs.get(i).and_then(|&v| graph.value(v).const_data());
        let b_ok = node.inputs.len() < 3 || data(2).is_some();
        let (Some(w), true, 1) = (data(1), b_ok, node.outputs.len()) else { return Ok(None) };
        let conv_data = |i: usize| -> Result<Option<Tensor>> {
            data(i).map(|d| Tensor::from_data(d).map_err(named)).transpose()
        };
        let (wt, bt) = (Tensor::from_data(w).map_err(named)?, conv_data(2)?);
        let bias_dtype = || named(ops::bad("bias dtype differs from weights"));
        // A conv with its own fused clamp keeps it as its epilogue (nothing after it fuses).
        let (chain, chain_out) = if attrs.clamp.is_none() && fuse {
            fusion_chain(graph, &self.ids, pos, &self.readers, &self.is_output)
        } else {
            (Vec::new(), None)
        };
        let own_clamp = attrs.clamp.map(|(lo, hi)| Act::Clip(lo as f64, hi as f64));
        let kind = match &wt {
            Tensor::F32(wa) => {
                let b = bt.as_ref().map(|b| f32::view(b).ok_or_else(bias_dtype)).transpose()?;
                let pc = PreparedConv::new(attrs, wa, b).map_err(named)?;
                let epi = epilogue(graph, &self.ids, &chain, own_clamp);
                if lean {
                    // Checked above; the copy is dropped here.
                    let src =
                        ConvSource { attrs: attrs.clone(), w: w.clone(), b: data(2).cloned() };
                    Kind::ConvAtUse(Box::new(src), epi)
                } else {
                    Kind::ConvF32(Box::new(pc), epi)
                }
            }
            Tensor::F64(wa) => {
                let b = bt.as_ref().map(|b| f64::view(b).ok_or_else(bias_dtype)).transpose()?;
                let pc = PreparedConv::new(attrs, wa, b).map_err(named)?;
                Kind::ConvF64(Box::new(pc), epilogue(graph, &self.ids, &chain, own_clamp))
            }
            _ => return Ok(None),
        };
        Ok(Some(PreparedKind { kind, chain, chain_out }))
    }
}

/// Runs `f` on a thread of rayon's pool (at once if already on one): the kernels' parallel
/// loops then fork from inside the pool instead of each being injected into it from outside
/// and waking a worker, which cost a tenth of a ResNet-18 run.
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    out.expect("invariant: rayon::scope runs its body before returning")
}

/// Evaluates an op that may update input `i` (owned) in place; `rest` are the other inputs
/// in order. Only called for the inputs that [`run_as`] names.
fn eval_owned(op: &Op, i: usize, t: Tensor, rest: &[&Tensor], n_out: usize) -> Result<Vec<Tensor>> {
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh => one(activation::unary(op, t)?),
        Op::Clip => one(activation::clip(t, rest)?),
        Op::BatchNorm { epsilon } => one(activation::batch_norm(*epsilon, t, rest)?),
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            one(elementwise::binary_in_place(op, t, rest[0], i == 0)?)
        }
        Op::Reshape { shape: s } => one(shape::reshape(s, t)?),
        Op::Flatten { axis } => one(shape::flatten(*axis, t)?),
        Op::Squeeze { axes } => one(shape::squeeze(axes, t)?),
        Op::Unsqueeze { axes } => one(shape::unsqueeze(axes, t)?),
        Op::Identity => one(t),
        Op::Dropout => shape::dropout(t, n_out),
        Op::Unary(f) => one(unary::eval(*f, t)?),
        Op::Conv(_)
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::Concat { .. }
        | Op::Transpose { .. }
        | Op::Softmax { .. }
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Slice { .. }
        | Op::Cast { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Variadic(_)
        | Op::Reduce(_)
        | Op::Pow
        | Op::PRelu
        | Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Compare(_)
        | Op::Logic(_)
        | Op::Not
        | Op::Where => Err(InterpError::Internal(format!("{} cannot run in place", op.name()))),
        Op::Trunc { .. } | Op::MultiThreshold { .. } => {
            Err(InterpError::Internal(format!("{} cannot run in place", op.name())))
        }
        Op::TopK { .. } => Err(InterpError::Internal(format!("{} cannot run in place", op.name()))),
        Op::Expand { .. }
        | Op::Tile { .. }
        | Op::Split { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Resize(_)
        | Op::LogSoftmax { .. }
        | Op::Lrn { .. }
        | Op::InstanceNorm { .. }
        | Op::LayerNorm { .. }
        | Op::ConvTranspose { .. }
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Rnn(_)
        | Op::ZeroInsert { .. } => {
            Err(InterpError::Internal(format!("{} cannot run in place", op.name())))
        }
    }
}

/// How the runner runs an op (one arm per op).
#[derive(Clone, Copy)]
enum RunAs<'a> {
    /// Prepared at build time when its weights are constants (with the chain it fuses).
    Conv(&'a ConvAttrs),
    /// Through [`ops::eval`], or through [`eval_owned`] updating one of these inputs in place
    /// when it is read for the last time there: input 0, or for the binary ops 0 or 1.
    InPlace(&'static [usize]),
    /// Through [`ops::eval`].
    Generic,
}

fn run_as(op: &Op) -> RunAs<'_> {
    match op {
        Op::Conv(a) => RunAs::Conv(a),
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::Clip
        | Op::BatchNorm { .. }
        | Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Unary(_) => RunAs::InPlace(&[0]),
        Op::Add | Op::Sub | Op::Mul | Op::Div => RunAs::InPlace(&[0, 1]),
        Op::TopK { .. } => RunAs::Generic,
        Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::Concat { .. }
        | Op::Transpose { .. }
        | Op::Softmax { .. }
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Slice { .. }
        | Op::Cast { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Variadic(_)
        | Op::Reduce(_)
        | Op::Pow
        | Op::PRelu
        | Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Compare(_)
        | Op::Logic(_)
        | Op::Not
        | Op::Where
        | Op::Trunc { .. }
        | Op::MultiThreshold { .. }
        | Op::Expand { .. }
        | Op::Tile { .. }
        | Op::Split { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Resize(_)
        | Op::LogSoftmax { .. }
        | Op::Lrn { .. }
        | Op::InstanceNorm { .. }
        | Op::LayerNorm { .. }
        | Op::ConvTranspose { .. }
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Rnn(_)
        | Op::ZeroInsert { .. } => RunAs::Generic,
    }
}

/// Sets each step's `free` list (slots read for the last time there, or never read) and its
/// in-place input.
fn plan_lifetimes(steps: &mut [Step], outputs: &[Slot], n_dyn: usize) {
    const NEVER: usize = usize::MAX;
    let mut last: Vec<Option<usize>> = vec![None; n_dyn];
    for (i, st) in steps.iter().enumerate() {
        for s in &st.inputs {
            if let Slot::Dyn(d) = *s {
                last[d] = Some(i);
            }
        }
    }
    for s in outputs {
        if let Slot::Dyn(d) = *s {
            last[d] = Some(NEVER);
        }
    }
    for i in 0..steps.len() {
        let st = &steps[i];
        let mut free: Vec<usize> = st
            .inputs
            .iter()
            .filter_map(|s| match *s {
                Slot::Dyn(d) if last[d] == Some(i) => Some(d),
                _ => None,
            })
            .collect();
        free.extend(st.outputs.iter().copied().filter(|&o| last[o].is_none()));
        free.sort_unstable();
        free.dedup();
        let in_place = match run_as(&st.op) {
            RunAs::InPlace(ins) => ins,
            RunAs::Conv(_) | RunAs::Generic => &[],
        };
        let own = if matches!(st.kind, Kind::Generic) {
            in_place.iter().copied().find(|&j| match st.inputs.get(j) {
                Some(&Slot::Dyn(d)) => {
                    last[d] == Some(i)
                        && st.inputs.iter().filter(|&&s| s == Slot::Dyn(d)).count() == 1
                }
                _ => false,
            })
        } else {
            None
        };
        let st = &mut steps[i];
        st.free = free;
        st.own = own;
    }
}

/// The arena positions of a BatchNorm and/or activation that can be fused after the conv at
/// `pos`, and the value the chain's last op defines.
fn fusion_chain(
    g: &Graph,
    ids: &[NodeId],
    pos: usize,
    readers: &[usize],
    is_output: &[bool],
) -> (Vec<usize>, Option<ValueId>) {
    let mut chain = Vec::new();
    let mut cur = g.node(ids[pos]).outputs[0];
    let mut p = pos;
    let mut stage = 0; // 0: BN or act allowed, 1: act allowed
    while stage < 2 {
        if readers[cur.index()] != 1 || is_output[cur.index()] {
            break;
        }
        // The sole reader: search forward (it comes later in execution order).
        let Some(q) = (p + 1..ids.len()).find(|&q| g.node(ids[q]).inputs.contains(&cur)) else {
            break;
        };
        let n = g.node(ids[q]);
        if n.inputs[0] != cur || n.outputs.len() != 1 {
            break;
        }
        let consts_after = n.inputs[1..].iter().all(|&v| g.value(v).is_const());
        // BatchNorm parameters must be what the unfused kernel accepts: one per output
        // channel, of the convolution's dtype.
        let w = g.ty(g.node(ids[pos]).inputs[1]);
        let bn_params_fit = n.inputs[1..].iter().all(|&v| {
            let t = g.ty(v);
            t.dtype == w.dtype && t.numel() == w.shape[0]
        });
        let ok = match &n.op {
            Op::BatchNorm { .. } if stage == 0 => {
                n.inputs.len() == 5 && consts_after && bn_params_fit
            }
            op => fusable_act(g, op, &n.inputs).is_some(),
        };
        if !ok {
            break;
        }
        stage = if matches!(n.op, Op::BatchNorm { .. }) { 1 } else { 2 };
        chain.push(q);
        cur = n.outputs[0];
        p = q;
    }
    let out = chain.last().map(|_| cur);
    (chain, out)
}

/// The epilogue of a fusion chain (BN coefficients computed as the BatchNorm kernel does).
/// `own_clamp`, the conv's own fused clamp, takes the place of a fused activation (a conv with
/// one fuses nothing after it).
fn epilogue<T: Float>(
    g: &Graph,
    ids: &[NodeId],
    chain: &[usize],
    own_clamp: Option<crate::ops::activation::Act>,
) -> Epilogue<T> {
    let mut epi = Epilogue::default();
    for &q in chain {
        let n = g.node(ids[q]);
        match &n.op {
            Op::BatchNorm { epsilon } => {
                let p: Vec<Vec<T>> = n.inputs[1..]
                    .iter()
                    .map(|&v| {
                        let d = g
                            .value(v)
                            .const_data()
                            .expect("invariant: fusion_chain checked constants");
                        d.to_f64_vec().into_iter().map(T::of).collect()
                    })
                    .collect();
                epi.affine = Some(bn_coefficients(*epsilon, &p[0], &p[1], &p[2], &p[3]));
            }
            op => epi.act = fusable_act(g, op, &n.inputs),
        }
    }
    epi.act = own_clamp.or(epi.act);
    epi
}
