//! The graph arena.
//!
//! Architecture invariant: node order in the arena is execution order (topological); every
//! iteration is in id order, so printing, passes and interpreters are deterministic.

use crate::crossbar::{Placement, TargetStamp};
use crate::{Op, TensorData, TensorType};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input, fed at run time.
    Input,
    /// A constant; its type matches the data's dtype and shape.
    Const(TensorData),
    /// Output `slot` of `node`.
    Node { node: NodeId, slot: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: TensorType,
    pub def: ValueDef,
}

impl Value {
    pub fn const_data(&self) -> Option<&TensorData> {
        match &self.def {
            ValueDef::Const(d) => Some(d),
            _ => None,
        }
    }

    pub fn is_const(&self) -> bool {
        matches!(self.def, ValueDef::Const(_))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The name the node had in the source model (kept for messages and per-layer overrides).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Where it runs on the chip (set by the `tile` pass).
    pub placement: Placement,
    /// What passes measured or decided about it (`note.rs`), in the order they were written.
    pub notes: Vec<crate::note::Note>,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    /// The chip the graph is mapped for, once the `tile` pass ran.
    pub target: Option<TargetStamp>,
    values: Vec<Value>,
    nodes: Vec<Option<Node>>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    by_name: HashMap<String, ValueId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    fn push_value(&mut self, name: String, ty: TensorType, def: ValueDef) -> ValueId {
        let name = self.unique_name(&name);
        let id = ValueId(self.values.len() as u32);
        self.by_name.insert(name.clone(), id);
        self.values.push(Value { name, ty, def });
        id
    }

    /// A name not used by any value yet: `base` itself, or `base_1`, `base_2`...
    pub fn unique_name(&self, base: &str) -> String {
        let base = if base.is_empty() { "v" } else { base };
        if !self.by_name.contains_key(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.by_name.contains_key(n))
            .expect("invariant: an unused suffix exists")
    }

    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = self.push_value(name.into(), ty, ValueDef::Input);
        self.inputs.push(id);
        id
    }

    pub fn add_const(&mut self, name: impl Into<String>, data: TensorData) -> ValueId {
        let ty = TensorType::new(data.dtype(), data.shape().to_vec());
        self.push_value(name.into(), ty, ValueDef::Const(data))
    }

    /// Appends a node; its outputs are new values with the given names and types.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        outputs: Vec<(String, TensorType)>,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        let outs = outputs
            .into_iter()
            .enumerate()
            .map(|(slot, (n, ty))| self.push_value(n, ty, ValueDef::Node { node: id, slot }))
            .collect();
        self.nodes.push(Some(Node {
            name: name.into(),
            op,
            inputs,
            outputs: outs,
            placement: Placement::Unplaced,
            notes: Vec::new(),
        }));
        id
    }

    pub fn set_outputs(&mut self, outputs: Vec<ValueId>) {
        self.outputs = outputs;
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// Frees the data of constant `v` now when nothing reads it any more (no node's input, not
    /// a graph output), instead of at the next [`Graph::compact`], which removes the value: a
    /// pass that replaces a large constant then never holds both. The value stays, a dead
    /// constant of no elements, until then. Returns whether the data was freed.
    pub fn release_if_unused(&mut self, v: ValueId) -> bool {
        let unused = self.values[v.index()].is_const()
            && !self.outputs.contains(&v)
            && self.users(v).is_empty();
        if unused {
            let dtype = self.values[v.index()].ty.dtype;
            self.values[v.index()].def = ValueDef::Const(
                TensorData::from_raw(dtype, vec![0], bytes::Bytes::new())
                    .expect("invariant: zero elements take zero bytes"),
            );
        }
        unused
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        &self.values[id.index()].ty
    }

    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// Every value, in id order.
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values.iter().enumerate().map(|(i, v)| (ValueId(i as u32), v))
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    /// Renames a value, keeping names unique. Returns the name it got.
    pub fn rename_value(&mut self, id: ValueId, name: &str) -> String {
        let old = self.values[id.index()].name.clone();
        if old == name {
            return old;
        }
        self.by_name.remove(&old);
        let new = self.unique_name(name);
        self.by_name.insert(new.clone(), id);
        self.values[id.index()].name = new.clone();
        new
    }

    /// The live node `id`. Panics on a removed node: ids of removed nodes are never handed out.
    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.index()].as_ref().expect("invariant: node ids refer to live nodes")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.index()].as_mut().expect("invariant: node ids refer to live nodes")
    }

    pub fn is_live(&self, id: NodeId) -> bool {
        self.nodes.get(id.index()).is_some_and(|n| n.is_some())
    }

    /// Live nodes in execution order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes().map(|(id, _)| id).collect()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }

    /// Removes a node. Its output values stay in the arena (unreachable) until [`Graph::compact`].
    pub fn remove_node(&mut self, id: NodeId) -> Node {
        self.nodes[id.index()].take().expect("invariant: a node is removed once")
    }

    /// The nodes reading `value`, with the input slot, in execution order.
    pub fn users(&self, value: ValueId) -> Vec<(NodeId, usize)> {
        let mut out = Vec::new();
        for (id, n) in self.nodes() {
            for (slot, &v) in n.inputs.iter().enumerate() {
                if v == value {
                    out.push((id, slot));
                }
            }
        }
        out
    }

    /// The node defining `value`, if a node does.
    pub fn producer(&self, value: ValueId) -> Option<NodeId> {
        match self.values[value.index()].def {
            ValueDef::Node { node, .. } if self.is_live(node) => Some(node),
            _ => None,
        }
    }

    /// Makes every reader of `old` (nodes and graph outputs) read `new` instead.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in self.nodes.iter_mut().flatten() {
            for v in n.inputs.iter_mut() {
                if *v == old {
                    *v = new;
                }
            }
        }
        for v in self.outputs.iter_mut() {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Rebuilds the arena: drops removed nodes, values nothing reads or defines (except inputs
    /// and outputs), and renumbers in topological order (stable: ties keep their old order).
    /// Returns an error naming a node if the graph has a cycle.
    pub fn compact(&mut self) -> Result<(), String> {
        let order = self.topo_order()?;
        let mut used = vec![false; self.values.len()];
        for &v in self.inputs.iter().chain(self.outputs.iter()) {
            used[v.index()] = true;
        }
        for &n in &order {
            let node = self.node(n);
            for &v in node.inputs.iter().chain(node.outputs.iter()) {
                used[v.index()] = true;
            }
        }
        let mut new_graph = Graph::new(self.name.clone());
        new_graph.target = self.target.take();
        let mut vmap: Vec<Option<ValueId>> = vec![None; self.values.len()];
        // Inputs, then constants in id order, then node outputs in execution order.
        for &v in &self.inputs {
            let val = &self.values[v.index()];
            vmap[v.index()] = Some(new_graph.add_input(val.name.clone(), val.ty.clone()));
        }
        for (i, val) in self.values.iter().enumerate() {
            if let (ValueDef::Const(d), true) = (&val.def, used[i]) {
                let id = new_graph.add_const(val.name.clone(), d.clone());
                new_graph.values[id.index()].ty = val.ty.clone();
                vmap[i] = Some(id);
            }
        }
        for &n in &order {
            let node = self.node(n);
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                match vmap[v.index()] {
                    Some(nv) => inputs.push(nv),
                    None => {
                        return Err(format!(
                            "node '{}' reads value '{}' that nothing defines",
                            node.name,
                            self.values[v.index()].name
                        ))
                    }
                }
            }
            let outs = node
                .outputs
                .iter()
                .map(|&v| (self.values[v.index()].name.clone(), self.values[v.index()].ty.clone()))
                .collect();
            let nid = new_graph.add_node(node.name.clone(), node.op.clone(), inputs, outs);
            new_graph.node_mut(nid).placement = node.placement.clone();
            new_graph.node_mut(nid).notes = node.notes.clone();
            for (k, &v) in node.outputs.iter().enumerate() {
                vmap[v.index()] = Some(new_graph.node(nid).outputs[k]);
            }
        }
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for &v in &self.outputs {
            match vmap[v.index()] {
                Some(nv) => outputs.push(nv),
                None => {
                    return Err(format!(
                        "graph output '{}' is not defined",
                        self.values[v.index()].name
                    ))
                }
            }
        }
        new_graph.outputs = outputs;
        *self = new_graph;
        Ok(())
    }

    /// Live nodes in a topological order that keeps the arena order where it already is one.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, String> {
        let live: Vec<NodeId> = self.node_ids();
        let mut defined = vec![false; self.values.len()];
        for (i, v) in self.values.iter().enumerate() {
            if !matches!(v.def, ValueDef::Node { .. }) {
                defined[i] = true;
            }
        }
        let mut done = vec![false; self.nodes.len()];
        let mut order = Vec::with_capacity(live.len());
        // Repeated stable sweeps: linear for graphs already in order, which is the usual case.
        loop {
            let mut progress = false;
            for &n in &live {
                if done[n.index()] {
                    continue;
                }
                let node = self.node(n);
                if node.inputs.iter().all(|v| defined[v.index()]) {
                    for &o in &node.outputs {
                        defined[o.index()] = true;
                    }
                    done[n.index()] = true;
                    order.push(n);
                    progress = true;
                }
            }
            if order.len() == live.len() {
                return Ok(order);
            }
            if !progress {
                let stuck = live
                    .iter()
                    .find(|n| !done[n.index()])
                    .map(|&n| self.node(n).name.clone())
                    .unwrap_or_default();
                return Err(format!(
                    "node '{stuck}' reads a value that is never defined or is part of a cycle"
                ));
            }
        }
    }
}
