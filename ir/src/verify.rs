//! The verifier: every problem of a graph, each tied to a node.
//!
//! [`verify`] collects all problems into one [`IrError::Verify`]. A message about a node starts
//! with `node 'NAME' (op):`; others start with the graph input, constant or output concerned.
//!
//! Checks: every node input is defined by an earlier node, a graph input or a constant (arena
//! order is execution order); value names are unique; graph inputs and outputs are defined;
//! constant data matches its value's type; node input and output counts fit the op
//! ([`crate::optable::arity`]); each node's declared result types equal what
//! [`crate::infer::infer`] computes (dtype and shape; quantization too when inference gives
//! one, since it cannot know scales from types alone); quantization parameters are sane.

use crate::error::IrError;
use crate::optable::arity;
use crate::print::write_name;
use crate::{DType, Graph, NodeId, OnCodes, Op, Placement, TensorType, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

/// The signature of [`crate::infer::infer`].
pub type InferFn<'a> = &'a dyn Fn(&Op, &[&TensorType], usize) -> Result<Vec<TensorType>, String>;

/// Checks `g`; the error lists every problem found.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    verify_with(g, &crate::infer::infer)
}

/// As [`verify`], with another type inference (for tests, or targets with their own ops).
pub fn verify_with(g: &Graph, infer: InferFn<'_>) -> Result<(), IrError> {
    let errs = Verifier { g, errs: Vec::new() }.run(infer);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(IrError::Verify(errs))
    }
}

struct Verifier<'g> {
    g: &'g Graph,
    errs: Vec<String>,
}

fn fmt_range(r: &RangeInclusive<usize>) -> String {
    match (*r.start(), *r.end()) {
        (a, b) if a == b => format!("{a}"),
        (a, usize::MAX) => format!("at least {a}"),
        (a, b) => format!("{a} to {b}"),
    }
}

/// The range of values `dtype` can store, for integer dtypes.
fn int_range(dtype: DType) -> Option<(i64, i64)> {
    Some(match dtype {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I64 => (i64::MIN, i64::MAX),
        DType::F32 | DType::F64 | DType::Bool => return None,
    })
}

/// Integer codes with quantization parameters (after the `quantize` pass).
pub fn is_codes(t: &TensorType) -> bool {
    t.quant.is_some() && t.dtype.is_int()
}

/// Problems of a type's quantization parameters.
pub fn check_quant(ty: &TensorType) -> Vec<String> {
    let Some(q) = &ty.quant else { return Vec::new() };
    let mut out = Vec::new();
    // Codes are 2..=16 bits; biases are 32-bit codes in i32.
    let bits_ok =
        (2..=16).contains(&q.bits) || (q.bits == 32 && matches!(ty.dtype, DType::I32 | DType::F32));
    if !bits_ok {
        out.push(format!("quant bits {} is not in 2..=16 (or 32 for an i32 bias)", q.bits));
    }
    match int_range(ty.dtype) {
        // An f32 value with parameters is annotated: to be quantized with them.
        None if ty.dtype == DType::F32 => {}
        None => out.push(format!(
            "quantized storage must be an integer dtype (or f32 for an annotation), not {}",
            ty.dtype
        )),
        Some((lo, hi)) if bits_ok => {
            let (clo, chi) = q.code_range();
            if clo < lo || chi > hi {
                let s = if q.signed { "signed" } else { "unsigned" };
                out.push(format!("{}-bit {s} codes do not fit {}", q.bits, ty.dtype));
            }
        }
        Some(_) => {}
    }
    let want = match q.axis {
        None => Some(1),
        Some(a) => match ty.shape.get(a) {
            Some(&d) => Some(d),
            None => {
                out.push(format!("quant axis {a} is out of range for rank {}", ty.rank()));
                None
            }
        },
    };
    if let Some(n) = want {
        let what = match q.axis {
            None => "per-tensor quantization needs 1".to_string(),
            Some(a) => format!("quantization along axis {a} needs {n}"),
        };
        if q.scale.len() != n {
            out.push(format!("{what} scale(s), has {}", q.scale.len()));
        }
        if q.zero_point.len() != n {
            out.push(format!("{what} zero point(s), has {}", q.zero_point.len()));
        }
    }
    if let Some((i, s)) = q.scale.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        out.push(format!("quant scale[{i}] = {} is not finite and > 0", crate::print::fmt_f32(*s)));
    }
    if bits_ok && q.bits <= 16 {
        let (lo, hi) = q.code_range();
        if let Some((i, z)) =
            q.zero_point.iter().enumerate().find(|(_, z)| !(lo..=hi).contains(&(**z as i64)))
        {
            out.push(format!("quant zero point[{i}] = {z} is outside the code range {lo}..={hi}"));
        }
    }
    out
}

impl Verifier<'_> {
    /// `%name` / `@name` of a value (or a placeholder for a bad id).
    fn show(&self, id: ValueId) -> String {
        if id.index() >= self.g.value_count() {
            return format!("<bad value #{}>", id.0);
        }
        let v = self.g.value(id);
        let mut s = String::from(if v.is_const() { "@" } else { "%" });
        let _ = write_name(&mut s, &v.name);
        s
    }

    fn node_prefix(&self, id: NodeId) -> String {
        let n = self.g.node(id);
        format!("node '{}' ({})", n.name, n.op.name())
    }

    /// Who defines value `id`, for messages: a node prefix, `graph input %x` or `constant @c`.
    fn definer(&self, id: ValueId) -> String {
        match &self.g.value(id).def {
            ValueDef::Node { node, .. } if self.g.is_live(*node) => {
                format!("{}: result {}", self.node_prefix(*node), self.show(id))
            }
            ValueDef::Node { .. } => format!("value {} (of a removed node)", self.show(id)),
            ValueDef::Input => format!("graph input {}", self.show(id)),
            ValueDef::Const(_) => format!("constant {}", self.show(id)),
        }
    }

    fn run(mut self, infer: InferFn<'_>) -> Vec<String> {
        let g = self.g;
        let n = g.value_count();
        let inputs: HashSet<ValueId> = g.inputs().iter().copied().collect();
        let mut defined = vec![false; n];
        for &v in g.inputs() {
            if v.index() >= n {
                self.errs.push(format!("graph input {}: no such value", self.show(v)));
            } else if !matches!(g.value(v).def, ValueDef::Input) {
                self.errs.push(format!("{}: listed as a graph input", self.definer(v)));
            } else {
                defined[v.index()] = true;
            }
        }
        // Values: definitions, names, constant data, quantization.
        let mut names: HashMap<&str, ValueId> = HashMap::new();
        for (id, v) in g.values() {
            let live = match &v.def {
                ValueDef::Input => {
                    if !inputs.contains(&id) {
                        self.errs
                            .push(format!("{}: not in the graph's input list", self.definer(id)));
                    }
                    true
                }
                ValueDef::Const(d) => {
                    defined[id.index()] = true;
                    let who = self.definer(id);
                    if d.dtype() != v.ty.dtype || d.shape() != v.ty.shape.as_slice() {
                        let dt = TensorType::new(d.dtype(), d.shape().to_vec());
                        self.errs.push(format!("{who}: data is {dt} but the type is {}", v.ty));
                    } else if d.dtype() == DType::Bool {
                        if let Some((i, b)) = d.raw().iter().enumerate().find(|(_, b)| **b > 1) {
                            self.errs.push(format!("{who}: bool element {i} is {b} (not 0 or 1)"));
                        }
                    }
                    true
                }
                ValueDef::Node { node, slot } => {
                    let ok = g.is_live(*node) && g.node(*node).outputs.get(*slot) == Some(&id);
                    if g.is_live(*node) && !ok {
                        self.errs.push(format!(
                            "{}: result {} claims to be result {slot} of this node but is not",
                            self.node_prefix(*node),
                            self.show(id)
                        ));
                    }
                    ok
                }
            };
            if !live {
                continue;
            }
            if let Some(&prev) = names.get(v.name.as_str()) {
                let who = self.definer(id);
                let prev = self.definer(prev);
                self.errs.push(format!("{who}: name already used by {prev}"));
            } else {
                names.insert(&v.name, id);
            }
            if !matches!(v.def, ValueDef::Node { .. }) {
                for e in check_quant(&v.ty) {
                    let who = self.definer(id);
                    self.errs.push(format!("{who}: {e}"));
                }
            }
        }
        // Nodes, in execution order.
        for (nid, node) in g.nodes() {
            let who = self.node_prefix(nid);
            let mut inputs_ok = true;
            for (slot, &v) in node.inputs.iter().enumerate() {
                if v.index() >= n {
                    self.errs.push(format!("{who}: input {slot} is {}", self.show(v)));
                    inputs_ok = false;
                } else if !defined[v.index()] {
                    let why = match g.value(v).def {
                        ValueDef::Node { node, .. } if g.is_live(node) => {
                            format!("used before it is defined (by node '{}')", g.node(node).name)
                        }
                        ValueDef::Node { .. } => "defined by a removed node".to_string(),
                        _ => "not defined".to_string(),
                    };
                    self.errs.push(format!("{who}: input {slot} {} is {why}", self.show(v)));
                    inputs_ok = false;
                }
            }
            let (ins, outs) = arity(&node.op);
            let mut arity_ok = true;
            if !ins.contains(&node.inputs.len()) {
                let want = fmt_range(&ins);
                self.errs.push(format!("{who}: takes {want} input(s), has {}", node.inputs.len()));
                arity_ok = false;
            }
            if !outs.contains(&node.outputs.len()) {
                let want = fmt_range(&outs);
                self.errs.push(format!("{who}: has {want} result(s), not {}", node.outputs.len()));
                arity_ok = false;
            }
            for &o in &node.outputs {
                if o.index() >= n {
                    self.errs.push(format!("{who}: result {} does not exist", self.show(o)));
                    inputs_ok = false;
                    continue;
                }
                for e in check_quant(g.ty(o)) {
                    self.errs.push(format!("{who}: result {}: {e}", self.show(o)));
                }
            }
            if inputs_ok && arity_ok {
                self.check_inference(nid, infer);
                self.check_quant_agreement(nid);
                self.check_placement(nid);
            }
            for &o in &node.outputs {
                if let Some(d) = defined.get_mut(o.index()) {
                    *d = true;
                }
            }
        }
        for (i, &v) in g.outputs().iter().enumerate() {
            if !defined.get(v.index()).copied().unwrap_or(false) {
                self.errs.push(format!("graph output {i} {} is not defined", self.show(v)));
            }
        }
        self.check_array_overlap();
        self.errs
    }

    /// A crossbar map fits its node's weight matrix and is consistent in itself.
    fn check_placement(&mut self, nid: NodeId) {
        let g = self.g;
        let node = g.node(nid);
        let Placement::Crossbar(m) = &node.placement else { return };
        let who = self.node_prefix(nid);
        let shape = |slot: usize| node.inputs.get(slot).map(|&v| g.ty(v).shape.clone());
        let dims = match (&node.op, shape(1)) {
            (Op::Conv(a), Some(w)) if w.len() >= 2 => {
                Some((w[1..].iter().product::<usize>(), w[0], a.group))
            }
            (Op::Gemm { trans_b, .. }, Some(w)) if w.len() == 2 => {
                Some(if *trans_b { (w[1], w[0], 1) } else { (w[0], w[1], 1) })
            }
            (Op::MatMul, Some(w)) if w.len() == 2 => Some((w[0], w[1], 1)),
            _ => None,
        };
        let Some((k, n, groups)) = dims else {
            self.errs.push(format!(
                "{who}: placed on crossbars, but it is not a Conv/Gemm/MatMul with a weight matrix"
            ));
            return;
        };
        if (m.k, m.n, m.groups) != (k, n, groups) {
            self.errs.push(format!(
                "{who}: crossbar map is for k={} n={} groups={}, the weights give k={k} n={n} groups={groups}",
                m.k, m.n, m.groups
            ));
        }
        if let Err(e) = m.check() {
            self.errs.push(format!("{who}: crossbar map: {e}"));
        }
    }

    /// No two tile blocks share a cell of an array.
    fn check_array_overlap(&mut self) {
        let mut rects: Vec<(usize, (usize, usize, usize, usize), String)> = Vec::new();
        for (nid, node) in self.g.nodes() {
            if let Placement::Crossbar(m) = &node.placement {
                for b in &m.blocks {
                    let (r, c) = m.block_extent(b);
                    rects.push((
                        b.array,
                        (b.at.0, b.at.0 + r, b.at.1, b.at.1 + c),
                        self.node_prefix(nid),
                    ));
                }
            }
        }
        rects.sort_by_key(|r| (r.0, r.1));
        let mut i = 0;
        while i < rects.len() {
            let j =
                rects[i..].iter().position(|r| r.0 != rects[i].0).map_or(rects.len(), |p| i + p);
            for a in i..j {
                for b in a + 1..j {
                    let (x, y) = (rects[a].1, rects[b].1);
                    if x.0 < y.1 && y.0 < x.1 && x.2 < y.3 && y.2 < x.3 {
                        self.errs.push(format!(
                            "array {}: a tile of {} overlaps a tile of {}",
                            rects[a].0, rects[a].2, rects[b].2
                        ));
                        return;
                    }
                }
            }
            i = j;
        }
    }

    fn check_inference(&mut self, nid: NodeId, infer: InferFn<'_>) {
        let g = self.g;
        let node = g.node(nid);
        let who = self.node_prefix(nid);
        // Integer codes with parameters stand for real values: a quantized node is inferred on
        // the float view of its inputs (quantize/dequantize nodes convert, so they are not).
        let converts = match node.op.on_codes() {
            OnCodes::Quantizes | OnCodes::Dequantizes => true,
            OnCodes::Matrix | OnCodes::Moves | OnCodes::Integer | OnCodes::Float => false,
        };
        let views: Vec<TensorType> = node
            .inputs
            .iter()
            .map(|&v| {
                let t = g.ty(v);
                if !converts && is_codes(t) {
                    TensorType::new(DType::F32, t.shape.clone())
                } else {
                    t.clone()
                }
            })
            .collect();
        let tys: Vec<&TensorType> = views.iter().collect();
        match infer(&node.op, &tys, node.outputs.len()) {
            Err(e) => self.errs.push(format!("{who}: {e}")),
            Ok(inferred) if inferred.len() != node.outputs.len() => self.errs.push(format!(
                "{who}: inference gives {} result(s), the node has {}",
                inferred.len(),
                node.outputs.len()
            )),
            Ok(inferred) => {
                for (&o, want) in node.outputs.iter().zip(&inferred) {
                    let have = g.ty(o);
                    let as_codes = is_codes(have) && want.dtype == DType::F32;
                    let same = (have.dtype == want.dtype || as_codes)
                        && have.shape == want.shape
                        && (want.quant.is_none() || want.quant == have.quant);
                    if !same {
                        let shown = self.show(o);
                        self.errs.push(format!(
                            "{who}: result {shown} is declared {have} but infers to {want}"
                        ));
                    }
                }
            }
        }
    }

    /// Producers and consumers of codes agree: a matrix op on codes has integer weights and
    /// bias with parameters and produces codes; ops that only move codes keep their input's
    /// parameters; ops that compute in float do not read codes.
    fn check_quant_agreement(&mut self, nid: NodeId) {
        let g = self.g;
        let node = g.node(nid);
        let who = self.node_prefix(nid);
        let Some(&x) = node.inputs.first() else { return };
        let (tx, ty) = (g.ty(x), g.ty(node.outputs[0]));
        if !is_codes(tx) {
            return;
        }
        let result_not_codes = |v: &Self| {
            format!("{who}: reads codes but its result {} is not codes", v.show(node.outputs[0]))
        };
        match node.op.on_codes() {
            OnCodes::Matrix => {
                if let Some(&w) = node.inputs.get(1) {
                    if !is_codes(g.ty(w)) {
                        self.errs.push(format!("{who}: reads codes {} but its weights {} are not integer codes with parameters", self.show(x), self.show(w)));
                    }
                }
                if let Some(&b) = node.inputs.get(2) {
                    if !(is_codes(g.ty(b)) && g.ty(b).dtype == DType::I32) {
                        self.errs.push(format!(
                            "{who}: reads codes but its bias {} is not i32 codes with parameters",
                            self.show(b)
                        ));
                    }
                }
                if !is_codes(ty) {
                    self.errs.push(result_not_codes(self));
                }
            }
            OnCodes::Moves => {
                if tx.quant != ty.quant || tx.dtype != ty.dtype {
                    self.errs.push(format!(
                        "{who}: moves codes, so its result {} must keep the parameters of {} ({} vs {})",
                        self.show(node.outputs[0]),
                        self.show(x),
                        ty,
                        tx
                    ));
                }
            }
            OnCodes::Float => {
                self.errs.push(format!(
                    "{who}: computes in float but reads integer codes {} (dequantize first)",
                    self.show(x)
                ));
            }
            OnCodes::Integer | OnCodes::Quantizes => {
                if !is_codes(ty) {
                    self.errs.push(result_not_codes(self));
                }
            }
            OnCodes::Dequantizes => {}
        }
    }
}
