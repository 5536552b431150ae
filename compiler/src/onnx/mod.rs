//! The ONNX importer: an ONNX model file → a statically shaped [`cimc_ir::Graph`].
//!
//! # What it does
//! - Decodes the file with prost from a memory map, zero copy: initializers' `raw_data` are
//!   slices of the mapping ([`proto`] is generated from the onnx package's `onnx.proto` by
//!   `scripts/gen-onnx-proto.sh` and committed).
//! - Resolves every shape statically: symbolic dims of graph inputs take
//!   [`ImportOptions::input_shapes`], else the batch ([`ImportOptions::batch`], default 1) for
//!   the first dim; any other symbolic dim is an error naming the input and dim.
//!   Initializers also listed as graph inputs are constants; [`ImportOptions::bind`] turns a
//!   graph input into a constant.
//! - Lowers each node into an [`cimc_ir::Op`] with resolved attributes, infers its output types
//!   with [`cimc_ir::infer::infer`], and folds it when all its inputs are constants (see
//!   the `fold` module; QuantizeLinear/DequantizeLinear are kept, so that quantized weights
//!   keep their integer codes). Shape, Constant, ConstantOfShape and Range always become
//!   constants; a graph output that becomes constant is a constant value of the graph.
//! - Refuses unsupported ops all at once: one [`Error::Unsupported`] lists every such node as
//!   `name (op_type, domain 'd', opset N)`.
//!
//! # Supported ops (default domain)
//! Each file of `nodes/` registers the ops it lowers in its `IMPORTS` table; `nodes::FAMILIES`
//! gathers them. That is the one list: the unsupported-op check and the lowering dispatch read
//! it, and `docs/onnx-ops.md` is generated from it (a test fails when the file is stale).
//!
//! # Opset policy
//! The model's default-domain opset must lie in [`MIN_OPSET`]`..=`[`MAX_OPSET`] (a model of IR
//! version 1 or 2, which has no `opset_import`, is of opset 1). Below opset 7 each node is first
//! rewritten to its opset-7 form by the `legacy` module (legacy broadcasting, `consumed_inputs`,
//! attributes that became inputs or the reverse), refusing what has no opset-7 equivalent
//! (BatchNormalization with `is_test=0`, legacy broadcasting that does not fit). Within it an op
//! is accepted at every version whose semantics are the implemented ones (most revisions only
//! add types); the differing old forms are lowered to the same IR: Clip < 11 and Pad < 11
//! (attributes instead of inputs), Slice < 10, Squeeze/Unsqueeze < 13 (axes attribute),
//! Softmax < 13 (`coerce_2d`; recorded as the plain form when the axis is the last one, where
//! both agree), Dropout < 12 (ratio attribute; a non-constant `training_mode` is taken as
//! inference), Dropout < 10 (its mask has the input's type: a constant of ones), ReduceMean < 18
//! (axes attribute). Refused with a message: BatchNormalization in training mode or with
//! `spatial=0`, attributes an op does not know (e.g. a QuantizeLinear `precision` other than the
//! scale's type), and element types outside f32, f64, i8, u8, i16, u16, i32, i64, bool
//! (float16 and bfloat16 are read as f32: such models run in f32). Other domains may be listed
//! in `opset_import` as long as no node uses them, but for the ops of `nodes/qonnx.rs`
//! (QONNX, Brevitas, FINN).

mod attrs;
mod fold;
mod legacy;
pub mod limits;
mod mapped;
pub use mapped::{changed_files, check_unchanged, track_changes};
mod nodes;
#[allow(clippy::all, missing_docs, rustdoc::all)]
#[rustfmt::skip]
pub mod proto;
mod tensor;

use crate::error::{Error, Result};
use bytes::Bytes;
use cimc_ir::{Graph, TensorData, TensorType, ValueId};
pub use limits::ImportLimits;
pub use nodes::supported_ops_markdown;
use nodes::{Ctx, Lowered};
use prost::Message;
use proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tensor::{byte_size, dtype_of, TensorReader};

/// Lowest default-domain opset accepted.
pub const MIN_OPSET: i64 = 1;
/// Highest default-domain opset accepted (the newest the bundled `onnx.proto` knows).
pub const MAX_OPSET: i64 = 28;

/// How to make a model's shapes static and which inputs are constants.
#[derive(Default, Clone, Debug)]
pub struct ImportOptions {
    /// The size of a symbolic first dim of the graph inputs (default 1).
    pub batch: Option<usize>,
    /// Full shapes of named graph inputs, overriding the model's.
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Graph inputs that become constants with this data.
    pub bind: Vec<(String, TensorData)>,
    /// Caps on nodes, graph depth and tensor size.
    pub limits: ImportLimits,
}

/// Imports an ONNX model file.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let map = mapped::MappedFile::open(path).map_err(|e| Error::io(path, e))?;
    let bytes = map.as_ref().map_or_else(Bytes::new, mapped::MappedFile::bytes);
    import_impl(bytes, map, path, opts)
}

/// Imports an ONNX model held in `bytes`; `file` names it in messages, and external data are
/// looked up in its folder.
pub fn import_bytes(bytes: Bytes, file: &Path, opts: &ImportOptions) -> Result<Graph> {
    import_impl(bytes, None, file, opts)
}

/// [`import_bytes`], where `map`, when given, is the map `bytes` are (large weights then give
/// their pages back when dropped, `mapped.rs`).
fn import_impl(
    bytes: Bytes,
    map: Option<mapped::MappedFile>,
    file: &Path,
    opts: &ImportOptions,
) -> Result<Graph> {
    let model = decode_model(bytes, file)?;
    let graph =
        model.graph.as_ref().ok_or_else(|| onnx_err(file, "the model has no graph".into()))?;
    let opset = default_opset(&model, graph, file)?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut imp = Importer {
        file: file.to_path_buf(),
        g: Graph::new(graph.name.clone().unwrap_or_default()),
        env: HashMap::new(),
        reserved: HashSet::new(),
        consumed: HashSet::new(),
        reader: TensorReader::new(dir, opts.limits).with_model_map(map),
    };
    imp.run(graph, opset, opts)?;
    Ok(imp.g)
}

/// Reads a `TensorProto` file (the `.pb` files of the ONNX test cases): its name and data.
pub fn read_tensor_pb(path: &Path) -> Result<(String, TensorData)> {
    let bytes = tensor::map_file(path).map_err(|e| Error::io(path, e))?;
    read_tensor_pb_bytes(bytes, path, ImportLimits::default())
}

/// Reads a `TensorProto` held in `bytes`; `file` names it in messages, and external data are
/// looked up in its folder.
pub fn read_tensor_pb_bytes(
    bytes: Bytes,
    file: &Path,
    limits: ImportLimits,
) -> Result<(String, TensorData)> {
    let t = TensorProto::decode(bytes)
        .map_err(|e| onnx_err(file, format!("not a TensorProto: {e}")))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let data = TensorReader::new(dir, limits).read(&t).map_err(|m| onnx_err(file, m))?;
    Ok((t.name.unwrap_or_default(), data))
}

/// The graph inputs whose values (not only shapes) the importer needs: those feeding, directly
/// or through other nodes, a Reshape's shape, Slice's starts/ends/axes/steps, Pad's pads/axes,
/// Squeeze/Unsqueeze axes, ConstantOfShape's shape or Range's inputs. Bind them with
/// [`ImportOptions::bind`]. In graph input order.
pub fn value_operand_inputs(path: &Path) -> Result<Vec<String>> {
    let bytes = tensor::map_file(path).map_err(|e| Error::io(path, e))?;
    let model = decode_model(bytes, path)?;
    let graph =
        model.graph.as_ref().ok_or_else(|| onnx_err(path, "the model has no graph".into()))?;
    let producer: HashMap<&str, &NodeProto> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut todo: Vec<&str> = Vec::new();
    for n in &graph.node {
        if is_default_domain(n.domain.as_deref()) {
            for &slot in nodes::value_operand_slots(n.op_type.as_deref().unwrap_or("")) {
                todo.extend(n.input.get(slot).map(String::as_str).filter(|s| !s.is_empty()));
            }
        }
    }
    let mut needed: HashSet<&str> = HashSet::new();
    while let Some(name) = todo.pop() {
        if !needed.insert(name) {
            continue;
        }
        if let Some(n) = producer.get(name) {
            // Shape reads only its input's type.
            if n.op_type.as_deref() != Some("Shape") {
                todo.extend(n.input.iter().map(String::as_str).filter(|s| !s.is_empty()));
            }
        }
    }
    let inits: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    Ok(graph
        .input
        .iter()
        .filter_map(|i| i.name.as_deref())
        .filter(|n| needed.contains(n) && !inits.contains(n))
        .map(str::to_string)
        .collect())
}

fn onnx_err(file: &Path, msg: String) -> Error {
    Error::Onnx { file: file.to_path_buf(), msg }
}

fn decode_model(bytes: Bytes, file: &Path) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(onnx_err(file, "empty file: not an ONNX model".into()));
    }
    let model = ModelProto::decode(bytes).map_err(|e| {
        onnx_err(file, format!("not an ONNX model (protobuf decoding failed: {e})"))
    })?;
    if model.ir_version.is_none() || model.graph.is_none() {
        return Err(onnx_err(file, "not an ONNX model (no ir_version or no graph)".into()));
    }
    Ok(model)
}

fn is_default_domain(d: Option<&str>) -> bool {
    matches!(d, None | Some("") | Some("ai.onnx"))
}

/// The default-domain opset, checked, and the supported-op check over all nodes.
fn default_opset(model: &ModelProto, graph: &GraphProto, file: &Path) -> Result<i64> {
    let mut opsets: HashMap<&str, i64> = HashMap::new();
    for o in &model.opset_import {
        let d = o.domain.as_deref().unwrap_or("");
        opsets.insert(if d == "ai.onnx" { "" } else { d }, o.version.unwrap_or(0));
    }
    let mut unsupported = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        let op = n.op_type.as_deref().unwrap_or("");
        let domain = n.domain.as_deref().unwrap_or("");
        let default = is_default_domain(Some(domain));
        let microsoft = domain == nodes::qoperator::MICROSOFT_DOMAIN
            && nodes::qoperator::find_microsoft(op).is_some();
        let custom = !default && nodes::qonnx::find(domain, op).is_some();
        let supported = custom || microsoft || (default && nodes::find(op).is_some());
        if !supported {
            let key = if default { "" } else { domain };
            let shown = if default { "ai.onnx" } else { domain };
            let opset = opsets.get(key).map_or("not imported".to_string(), |v| v.to_string());
            unsupported
                .push(format!("{} ({op}, domain '{shown}', opset {opset})", node_name(n, i)));
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported { file: file.to_path_buf(), nodes: unsupported });
    }
    match opsets.get("") {
        Some(&v) if (MIN_OPSET..=MAX_OPSET).contains(&v) => Ok(v),
        Some(&v) => Err(onnx_err(
            file,
            format!("opset {v} of the default domain is not supported ({MIN_OPSET}..={MAX_OPSET})"),
        )),
        None if graph.node.is_empty() => Ok(MAX_OPSET),
        // IR versions 1 and 2 had no opset_import: their ops are of opset 1.
        None if model.ir_version.is_some_and(|v| v < 3) => Ok(1),
        None => Err(onnx_err(file, "opset_import has no entry for the default domain".into())),
    }
}

/// The node's name, or `<op_type>_<index>` when it has none.
fn node_name(n: &NodeProto, index: usize) -> String {
    match n.name.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{}_{index}", n.op_type.as_deref().unwrap_or("node")),
    }
}

/// The state of one import.
pub(crate) struct Importer {
    file: PathBuf,
    g: Graph,
    /// ONNX value name → IR value.
    env: HashMap<String, ValueId>,
    /// Every ONNX value name: names the importer makes up avoid them.
    reserved: HashSet<String>,
    /// Every value name a node reads or the graph outputs: an op's optional outputs that no one
    /// reads may go undefined.
    consumed: HashSet<String>,
    reader: TensorReader,
}

impl Importer {
    fn err(&self, msg: String) -> Error {
        onnx_err(&self.file, msg)
    }

    /// A value name used by neither the model nor the graph, based on `base`.
    fn fresh_name(&mut self, base: &str) -> String {
        let name = (0..)
            .map(|i| if i == 0 { base.to_string() } else { format!("{base}_{i}") })
            .find(|n| !self.reserved.contains(n) && self.g.find_value(n).is_none())
            .expect("invariant: an unused suffix exists");
        self.reserved.insert(name.clone());
        name
    }

    fn define(&mut self, name: &str, v: ValueId) -> Result<()> {
        if self.env.insert(name.to_string(), v).is_some() {
            return Err(self.err(format!("value '{name}' is defined more than once")));
        }
        Ok(())
    }

    fn run(&mut self, graph: &GraphProto, opset: i64, opts: &ImportOptions) -> Result<()> {
        self.reader.limits.check_nodes(graph.node.len()).map_err(|m| self.err(m))?;
        for n in &graph.node {
            self.reserved.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
            self.consumed.extend(n.input.iter().filter(|i| !i.is_empty()).cloned());
        }
        self.consumed.extend(graph.output.iter().filter_map(|o| o.name.clone()));
        self.reserved.extend(graph.input.iter().filter_map(|i| i.name.clone()));
        self.reserved.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(self.err("an initializer has no name".into()));
            }
            let data = self.reader.read(t).map_err(|m| self.err(m))?;
            let v = self.g.add_const(name.clone(), data);
            self.define(&name, v)?;
        }
        self.inputs(graph, opts)?;
        for idx in self.topo_order(graph)? {
            self.node(&graph.node[idx], idx, opset)?;
        }
        let mut outputs = Vec::with_capacity(graph.output.len());
        for o in &graph.output {
            let name = o.name.as_deref().unwrap_or("");
            let v = *self.env.get(name).ok_or_else(|| {
                self.err(format!(
                    "graph output '{name}' is not produced by any node, input or initializer"
                ))
            })?;
            self.check_declared(o, self.g.ty(v))?;
            outputs.push(v);
        }
        self.g.set_outputs(outputs);
        self.g.compact().map_err(|m| self.err(m))
    }

    /// Graph inputs that are not initializers: runtime inputs, or constants when bound.
    fn inputs(&mut self, graph: &GraphProto, opts: &ImportOptions) -> Result<()> {
        let real: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
            .collect();
        let names: BTreeSet<&str> = real.iter().filter_map(|i| i.name.as_deref()).collect();
        for n in opts.input_shapes.iter().map(|(n, _)| n).chain(opts.bind.iter().map(|(n, _)| n)) {
            if !names.contains(n.as_str()) {
                return Err(self.err(format!(
                    "no graph input named '{n}' (inputs: {})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for vi in real {
            let name = vi.name.clone().unwrap_or_default();
            let msg = |m: String| self.err(format!("graph input '{name}': {m}"));
            let (dtype, dims) = declared(vi).map_err(msg)?;
            if let Some((_, data)) = opts.bind.iter().find(|(n, _)| *n == name) {
                let fits = data.dtype() == dtype
                    && dims.as_ref().is_none_or(|d| {
                        d.len() == data.shape().len()
                            && d.iter().zip(data.shape()).all(|(a, b)| a.is_none_or(|a| a == *b))
                    });
                if !fits {
                    return Err(msg(format!(
                        "bound data {}{:?} does not fit the declared {dtype}{}",
                        data.dtype(),
                        data.shape(),
                        show_dims(&dims)
                    )));
                }
                let v = self.g.add_const(name.clone(), data.clone());
                self.define(&name, v)?;
                continue;
            }
            let shape = match opts.input_shapes.iter().find(|(n, _)| *n == name) {
                Some((_, s)) => {
                    if dims.as_ref().is_some_and(|d| d.len() != s.len()) {
                        return Err(msg(format!(
                            "shape {s:?} given, the model declares {}",
                            show_dims(&dims)
                        )));
                    }
                    s.clone()
                }
                None => {
                    let dims = dims.ok_or_else(|| {
                        msg("no shape declared: give it with input_shapes".into())
                    })?;
                    let mut shape = Vec::with_capacity(dims.len());
                    for (i, d) in dims.iter().enumerate() {
                        shape.push(match (d, i) {
                            (Some(d), _) => *d,
                            (None, 0) => opts.batch.unwrap_or(1),
                            (None, _) => {
                                return Err(msg(format!(
                                    "dim {i} of {} is symbolic: give the shape with input_shapes",
                                    show_dims(&Some(dims.clone()))
                                )))
                            }
                        });
                    }
                    shape
                }
            };
            self.reader.limits.check_rank(shape.len(), || format!("{dtype}[..]")).map_err(msg)?;
            let (_, nbytes) = byte_size(dtype, &shape).map_err(msg)?;
            self.reader.limits.check_tensor(nbytes, || format!("{dtype}{shape:?}")).map_err(msg)?;
            let v = self.g.add_input(name.clone(), TensorType::new(dtype, shape));
            self.define(&name, v)?;
        }
        Ok(())
    }

    /// A declared graph output must agree with the inferred type in dtype and rank.
    fn check_declared(&self, vi: &ValueInfoProto, ty: &TensorType) -> Result<()> {
        let name = vi.name.as_deref().unwrap_or("");
        let has_dtype = matches!(
            vi.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(proto::type_proto::Value::TensorType(t)) if t.elem_type.unwrap_or(0) != 0
        );
        if !has_dtype {
            return Ok(());
        }
        let (dtype, dims) =
            declared(vi).map_err(|m| self.err(format!("graph output '{name}': {m}")))?;
        if dtype != ty.dtype || dims.as_ref().is_some_and(|d| d.len() != ty.rank()) {
            return Err(self.err(format!(
                "graph output '{name}' is declared {dtype}{} but computes {}",
                show_dims(&dims),
                cimc_ir::infer::show(ty)
            )));
        }
        Ok(())
    }

    /// Node indices in a topological order (the file's order where it already is one).
    fn topo_order(&self, graph: &GraphProto) -> Result<Vec<usize>> {
        let nodes = &graph.node;
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if self.env.contains_key(o.as_str()) || producer.insert(o, i).is_some() {
                    return Err(self.err(format!("value '{o}' is defined more than once")));
                }
            }
        }
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut producers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut pending = vec![0usize; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                if self.env.contains_key(inp.as_str()) {
                    continue;
                }
                let p = *producer.get(inp.as_str()).ok_or_else(|| Error::OnnxNode {
                    file: self.file.clone(),
                    node: node_name(n, i),
                    op: n.op_type.clone().unwrap_or_default(),
                    msg: format!(
                        "input '{inp}' is not produced by any node, graph input or initializer"
                    ),
                })?;
                users[p].push(i);
                producers[i].push(p);
                pending[i] += 1;
            }
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<usize>> =
            (0..nodes.len()).filter(|&i| pending[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                pending[u] -= 1;
                if pending[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != nodes.len() {
            let stuck = (0..nodes.len()).find(|&i| pending[i] > 0).unwrap_or(0);
            return Err(self.err(format!(
                "the graph has a cycle through node '{}'",
                node_name(&nodes[stuck], stuck)
            )));
        }
        let max_depth = self.reader.limits.max_depth;
        if let Some((i, d)) = limits::first_too_deep(&order, &producers, max_depth) {
            return Err(self.err(format!(
                "node '{}' lies {d} nodes deep, above the limit of {max_depth} (raise it with --max-graph-depth)",
                node_name(&nodes[i], i)
            )));
        }
        Ok(order)
    }

    /// Lowers, type-checks and (when its inputs are constants) folds one node.
    fn node(&mut self, n: &NodeProto, idx: usize, opset: i64) -> Result<()> {
        let name = node_name(n, idx);
        let op_type = n.op_type.clone().unwrap_or_default();
        let file = self.file.clone();
        let node_err = |msg: String| Error::OnnxNode {
            file: file.clone(),
            node: name.clone(),
            op: op_type.clone(),
            msg,
        };
        let rewritten;
        let (n, opset) = if opset < legacy::LOWERED_AT && is_default_domain(n.domain.as_deref()) {
            rewritten = legacy::rewrite(self, n, &name, opset).map_err(node_err)?;
            (&rewritten, legacy::LOWERED_AT)
        } else {
            (n, opset)
        };
        let trim = |v: &[String]| v.iter().rposition(|s| !s.is_empty()).map_or(0, |p| p + 1);
        let inputs: Vec<Option<ValueId>> =
            n.input[..trim(&n.input)].iter().map(|s| self.env.get(s.as_str()).copied()).collect();
        let n_outputs = trim(&n.output);
        if n_outputs == 0 {
            return Err(node_err("the node has no outputs".into()));
        }
        let lowered = {
            let mut ctx = Ctx {
                imp: self,
                op_type: &op_type,
                attrs: attrs::Attrs::new(n),
                opset,
                name: &name,
                inputs,
                n_outputs,
            };
            let domain = n.domain.as_deref().unwrap_or("");
            if let (nodes::qoperator::MICROSOFT_DOMAIN, Some(import)) =
                (domain, nodes::qoperator::find_microsoft(&op_type))
            {
                (import.lower)(&mut ctx)
            } else {
                match nodes::qonnx::find(domain, &op_type) {
                    Some(custom) if !is_default_domain(Some(domain)) => (custom.lower)(&mut ctx),
                    _ => nodes::lower(&mut ctx),
                }
            }
        };
        let lowered = lowered.map_err(node_err)?;
        let outs = &n.output[..n_outputs];
        let (op, ins, extra, kept) = match lowered {
            Lowered::Consts(datas) => {
                if datas.len() != n_outputs {
                    return Err(node_err(format!(
                        "{} outputs, expected {}",
                        n_outputs,
                        datas.len()
                    )));
                }
                return self.define_consts(outs, datas);
            }
            Lowered::Op(op, ins) => {
                let kept = self.kept_outputs(&op, outs).map_err(&node_err)?;
                (op, ins, Vec::new(), kept)
            }
            Lowered::OpThenConsts(op, ins, consts) => (op, ins, consts, n_outputs),
        };
        let outs = &outs[..kept];
        let n_op = kept
            .checked_sub(extra.len())
            .filter(|&k| k > 0)
            .ok_or_else(|| node_err(format!("{} constant outputs of {n_outputs}", extra.len())))?;
        self.define_consts(&outs[n_op..], extra)?;
        let outs = &outs[..n_op];
        let types: Vec<&TensorType> = ins.iter().map(|&v| self.g.ty(v)).collect();
        let out_types = cimc_ir::infer::infer(&op, &types, n_op).map_err(&node_err)?;
        for t in &out_types {
            let limits = &self.reader.limits;
            limits
                .check_rank(t.rank(), || format!("its output {}[..]", t.dtype))
                .map_err(&node_err)?;
            let (_, nbytes) = byte_size(t.dtype, &t.shape).map_err(&node_err)?;
            let what = || format!("its output {}", cimc_ir::infer::show(t));
            limits.check_tensor(nbytes, what).map_err(&node_err)?;
        }
        let consts: Option<Vec<&TensorData>> =
            ins.iter().map(|&v| self.g.value(v).const_data()).collect();
        if let (Some(c), true) = (consts, fold::foldable(&op, &types) && !ins.is_empty()) {
            let folded = fold::eval(&op, &c, &out_types, &self.reader)
                .map_err(|m| Error::Internal(format!("node '{name}' ({op_type}): {m}")))?;
            if let Some(datas) = folded {
                return self.define_consts(outs, datas);
            }
        }
        let mut named = Vec::with_capacity(n_op);
        for (k, (o, t)) in outs.iter().zip(out_types).enumerate() {
            let vname =
                if o.is_empty() { self.fresh_name(&format!("{name}_out{k}")) } else { o.clone() };
            named.push((vname, t));
        }
        let id = self.g.add_node(name.clone(), op, ins, named);
        let out_ids = self.g.node(id).outputs.clone();
        for (o, v) in outs.iter().zip(out_ids) {
            if !o.is_empty() {
                self.define(o, v)?;
            }
        }
        Ok(())
    }

    /// How many of the node's outputs `outs` the IR op defines: all of them, or as many as the
    /// op has when the others are optional outputs that nothing reads (LayerNormalization's
    /// Mean and InvStdDev).
    fn kept_outputs(
        &self,
        op: &cimc_ir::Op,
        outs: &[String],
    ) -> std::result::Result<usize, String> {
        let most = *cimc_ir::optable::arity(op).1.end();
        if outs.len() <= most {
            return Ok(outs.len());
        }
        match outs[most..].iter().position(|o| self.consumed.contains(o)) {
            Some(k) => Err(format!(
                "output {} '{}' is used: only the first {most} output(s) are supported",
                most + k,
                outs[most + k]
            )),
            None => Ok(most),
        }
    }

    /// Constants for the node outputs `outs` (an empty name, an unused output, gets none).
    fn define_consts(&mut self, outs: &[String], datas: Vec<TensorData>) -> Result<()> {
        for (o, d) in outs.iter().zip(datas) {
            if !o.is_empty() {
                let v = self.g.add_const(o.clone(), d);
                self.define(o, v)?;
            }
        }
        Ok(())
    }
}

/// The declared element type and dims (`None` per symbolic or unknown dim; `None` overall when
/// no shape is declared) of a value.
fn declared(
    vi: &ValueInfoProto,
) -> std::result::Result<(cimc_ir::DType, Option<Vec<Option<usize>>>), String> {
    use proto::tensor_shape_proto::dimension::Value as Dim;
    use proto::type_proto::Value as Ty;
    let t = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Ty::TensorType(t)) => t,
        Some(_) => return Err("only tensor values are supported".into()),
        None => return Err("no type declared".into()),
    };
    let dtype = dtype_of(t.elem_type.unwrap_or(0))?;
    let dims = match &t.shape {
        None => None,
        Some(s) => Some(
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) if v >= 0 => Ok(Some(v as usize)),
                    // Old exporters (Snips' Tract models, early TensorFlow converters) wrote a
                    // dynamic dim as -1: the same as a `dim_param`.
                    Some(Dim::DimValue(-1)) => Ok(None),
                    Some(Dim::DimValue(v)) => Err(format!("negative dim {v}")),
                    _ => Ok(None),
                })
                .collect::<std::result::Result<Vec<_>, String>>()?,
        ),
    };
    Ok((dtype, dims))
}

fn show_dims(dims: &Option<Vec<Option<usize>>>) -> String {
    match dims {
        None => "[?]".into(),
        Some(d) => {
            let s: Vec<String> =
                d.iter().map(|x| x.map_or("?".into(), |v| v.to_string())).collect();
            format!("[{}]", s.join(","))
        }
    }
}
