//! The graph arena.
//!
//! Architecture invariant: node order in the arena is execution order (topological); every
//! iteration is in id order, so printing, passes and interpreters are deterministic.
//!
//! The graph keeps, for every value, the list of its readers (node and input slot), updated by
//! every mutation — `add_node`, `remove_node`, `replace_uses`, and a node's inputs changed through
//! [`Graph::node_mut`], whose guard re-indexes them when dropped — so `users`, `replace_uses`
//! and `node_count` cost what they return, not a walk over every node: passes stay linear in
//! the node count (issue 25: a 100,000-node chain compiles in seconds).

use crate::crossbar::{Placement, TargetStamp};
use crate::{Op, TensorData, TensorType};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

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
    /// The readers of each value, by value id: `(node, input slot)`, unordered.
    uses: Vec<Vec<(NodeId, u32)>>,
    /// How many nodes are live (not removed).
    live: usize,
}

/// A live node borrowed mutably from its graph ([`Graph::node_mut`]). Dropping it brings the
/// graph's reader lists up to date with whatever was done to the node's inputs.
pub struct NodeMut<'g> {
    id: NodeId,
    before: Vec<ValueId>,
    nodes: &'g mut Vec<Option<Node>>,
    uses: &'g mut Vec<Vec<(NodeId, u32)>>,
}

impl Deref for NodeMut<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        self.nodes[self.id.index()].as_ref().expect("invariant: node ids refer to live nodes")
    }
}

impl DerefMut for NodeMut<'_> {
    fn deref_mut(&mut self) -> &mut Node {
        self.nodes[self.id.index()].as_mut().expect("invariant: node ids refer to live nodes")
    }
}

impl Drop for NodeMut<'_> {
    fn drop(&mut self) {
        let id = self.id;
        let after =
            &self.nodes[id.index()].as_ref().expect("invariant: the node stays live").inputs;
        if *after == self.before {
            return;
        }
        for &v in &self.before {
            if let Some(readers) = self.uses.get_mut(v.index()) {
                readers.retain(|&(n, _)| n != id);
            }
        }
        for (slot, &v) in after.iter().enumerate() {
            // A node reading a value twice was removed once above for both slots.
            if let Some(readers) = self.uses.get_mut(v.index()) {
                if !readers.contains(&(id, slot as u32)) {
                    readers.push((id, slot as u32));
                }
            }
        }
    }
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
        self.uses.push(Vec::new());
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
        for (slot, &v) in inputs.iter().enumerate() {
            // A value that does not exist is not indexed: `verify` names the node reading it.
            if let Some(readers) = self.uses.get_mut(v.index()) {
                readers.push((id, slot as u32));
            }
        }
        self.live += 1;
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

    /// The live node `id`, to change; its readers are re-indexed when the guard drops.
    pub fn node_mut(&mut self, id: NodeId) -> NodeMut<'_> {
        let before = self.node(id).inputs.clone();
        NodeMut { id, before, nodes: &mut self.nodes, uses: &mut self.uses }
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
        self.live
    }

    /// Removes a node. Its output values stay in the arena (unreachable) until [`Graph::compact`].
    pub fn remove_node(&mut self, id: NodeId) -> Node {
        let node = self.nodes[id.index()].take().expect("invariant: a node is removed once");
        for &v in &node.inputs {
            if let Some(readers) = self.uses.get_mut(v.index()) {
                readers.retain(|&(n, _)| n != id);
            }
        }
        self.live -= 1;
        node
    }

    /// The nodes reading `value`, with the input slot, in execution order.
    pub fn users(&self, value: ValueId) -> Vec<(NodeId, usize)> {
        let readers = self.uses.get(value.index()).map_or(&[][..], Vec::as_slice);
        let mut out: Vec<(NodeId, usize)> =
            readers.iter().map(|&(n, slot)| (n, slot as usize)).collect();
        out.sort_unstable();
        out
    }

    /// How many node inputs read `value` (a node reading it twice counts twice).
    pub fn use_count(&self, value: ValueId) -> usize {
        self.uses.get(value.index()).map_or(0, Vec::len)
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
        if old == new {
            return;
        }
        let Some(readers) = self.uses.get_mut(old.index()).map(std::mem::take) else { return };
        for &(n, slot) in &readers {
            let node = self.nodes[n.index()].as_mut().expect("invariant: readers are live nodes");
            node.inputs[slot as usize] = new;
        }
        if let Some(into) = self.uses.get_mut(new.index()) {
            into.extend(readers);
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
        let vmap = self.renumbering(&order)?;
        let unchanged = order.len() == self.nodes.len()
            && order.iter().enumerate().all(|(i, n)| n.index() == i)
            && vmap.iter().enumerate().all(|(i, v)| *v == Some(ValueId(i as u32)));
        if unchanged {
            // The usual case after a pass that changed nothing, or only rewrote ops in place.
            return Ok(());
        }
        // Values and nodes are moved into their new places, not copied.
        let kept = vmap.iter().flatten().count();
        let mut old_values: Vec<Option<Value>> =
            std::mem::take(&mut self.values).into_iter().map(Some).collect();
        let mut old_nodes = std::mem::take(&mut self.nodes);
        let mut values: Vec<Option<Value>> = (0..kept).map(|_| None).collect();
        for (i, new) in vmap.iter().enumerate() {
            if let Some(new) = new {
                values[new.index()] = old_values[i].take();
            }
        }
        let remap = |v: &mut ValueId| {
            *v = vmap[v.index()].expect("invariant: renumbering maps every value nodes read");
        };
        let mut nodes = Vec::with_capacity(order.len());
        for (new_id, &n) in order.iter().enumerate() {
            let mut node = old_nodes[n.index()].take().expect("invariant: ordered nodes are live");
            node.inputs.iter_mut().for_each(remap);
            node.outputs.iter_mut().for_each(remap);
            for (slot, &o) in node.outputs.iter().enumerate() {
                let value = values[o.index()].as_mut().expect("invariant: node outputs are kept");
                value.def = ValueDef::Node { node: NodeId(new_id as u32), slot };
            }
            nodes.push(Some(node));
        }
        self.values =
            values.into_iter().map(|v| v.expect("invariant: every kept value moved")).collect();
        self.nodes = nodes;
        self.inputs.iter_mut().for_each(remap);
        self.outputs.iter_mut().for_each(remap);
        self.by_name.retain(|_, id| match vmap[id.index()] {
            Some(new) => {
                *id = new;
                true
            }
            None => false,
        });
        self.live = self.nodes.len();
        self.uses = vec![Vec::new(); self.values.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            let node = node.as_ref().expect("invariant: compacted nodes are live");
            for (slot, &v) in node.inputs.iter().enumerate() {
                self.uses[v.index()].push((NodeId(i as u32), slot as u32));
            }
        }
        Ok(())
    }

    /// The new id of every value after compaction, in the compacted order — inputs, then the
    /// constants nodes read or the graph returns in id order, then node outputs in execution
    /// order — or `None` for a value that goes. An error names a node reading, or a graph output
    /// that is, a value nothing defines.
    fn renumbering(&self, order: &[NodeId]) -> Result<Vec<Option<ValueId>>, String> {
        let mut used = vec![false; self.values.len()];
        for &v in self.inputs.iter().chain(self.outputs.iter()) {
            used[v.index()] = true;
        }
        for &n in order {
            let node = self.node(n);
            for &v in node.inputs.iter().chain(node.outputs.iter()) {
                used[v.index()] = true;
            }
        }
        let mut vmap: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut next = 0u32;
        let mut assign = |v: ValueId, vmap: &mut Vec<Option<ValueId>>| {
            vmap[v.index()] = Some(ValueId(next));
            next += 1;
        };
        for &v in &self.inputs {
            assign(v, &mut vmap);
        }
        for (i, val) in self.values.iter().enumerate() {
            if val.is_const() && used[i] {
                assign(ValueId(i as u32), &mut vmap);
            }
        }
        for &n in order {
            let node = self.node(n);
            if let Some(&v) = node.inputs.iter().find(|v| vmap[v.index()].is_none()) {
                return Err(format!(
                    "node '{}' reads value '{}' that nothing defines",
                    node.name,
                    self.values[v.index()].name
                ));
            }
            for &o in &node.outputs {
                assign(o, &mut vmap);
            }
        }
        if let Some(&v) = self.outputs.iter().find(|v| vmap[v.index()].is_none()) {
            return Err(format!("graph output '{}' is not defined", self.values[v.index()].name));
        }
        Ok(vmap)
    }

    /// Live nodes in a topological order that keeps the arena order where it already is one:
    /// of the nodes ready to run, the first in the arena goes next (Kahn's algorithm with a
    /// min-heap, `O(n log n)` however the arena is ordered).
    pub fn topo_order(&self) -> Result<Vec<NodeId>, String> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let in_order = self.nodes().all(|(id, node)| {
            node.inputs.iter().all(|&v| match self.values.get(v.index()).map(|x| &x.def) {
                Some(ValueDef::Node { node: p, .. }) => *p < id && self.is_live(*p),
                Some(_) => true,
                None => false,
            })
        });
        if in_order {
            // The usual case: the arena is already an execution order.
            return Ok(self.node_ids());
        }
        let mut waiting = vec![0usize; self.nodes.len()];
        let mut ready = BinaryHeap::new();
        for (id, node) in self.nodes() {
            waiting[id.index()] =
                node.inputs.iter().filter(|&&v| self.producer_slot(v).is_some()).count();
            if waiting[id.index()] == 0 {
                ready.push(Reverse(id));
            }
        }
        let mut order = Vec::with_capacity(self.live);
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for &o in &self.node(n).outputs {
                for &(u, _) in &self.uses[o.index()] {
                    waiting[u.index()] -= 1;
                    if waiting[u.index()] == 0 {
                        ready.push(Reverse(u));
                    }
                }
            }
        }
        if order.len() == self.live {
            return Ok(order);
        }
        let stuck = self
            .nodes()
            .find(|(id, _)| waiting[id.index()] > 0)
            .map(|(_, n)| n.name.clone())
            .unwrap_or_default();
        Err(format!("node '{stuck}' reads a value that is never defined or is part of a cycle"))
    }

    /// The node defining `v` (live or removed: a reader of a removed node's output never
    /// becomes ready, and is named), or `None` for inputs and constants.
    fn producer_slot(&self, v: ValueId) -> Option<NodeId> {
        match self.values.get(v.index()).map(|x| &x.def) {
            Some(ValueDef::Node { node, .. }) => Some(*node),
            Some(_) => None,
            // A value that does not exist: its reader waits forever and is named.
            None => Some(NodeId(u32::MAX)),
        }
    }
}
