//! The graph's reader lists (`Graph::users`, `use_count`, `node_count`, `topo_order`) against a
//! naive scan over every node, after random sequences of the mutations passes make: adding
//! nodes, changing a node's inputs through `node_mut`, `replace_uses`, `remove_node`, `compact`.

use cimc_ir::{DType, Graph, NodeId, Op, TensorType, ValueId};
use proptest::prelude::*;

/// What `users` must return: every (node, slot) reading `v`, in node order.
fn naive_users(g: &Graph, v: ValueId) -> Vec<(NodeId, usize)> {
    let mut out = Vec::new();
    for (id, n) in g.nodes() {
        for (slot, &x) in n.inputs.iter().enumerate() {
            if x == v {
                out.push((id, slot));
            }
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Edit {
    /// A node reading two earlier values (indices taken modulo the values there are).
    Add(usize, usize),
    /// Node (modulo the live ones) reads value `b` in slot `s` instead.
    Rewire(usize, usize, usize),
    /// Every reader of value `a` reads value `b` instead, if `b` was made before `a`'s readers.
    Replace(usize, usize),
    Remove(usize),
    Compact,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Add(a, b)),
        2 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(a, b, s)| Edit::Rewire(a, b, s)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Replace(a, b)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => Just(Edit::Compact),
    ]
}

fn ty() -> TensorType {
    TensorType::new(DType::F32, vec![2])
}

/// Values a new or rewired node may read without making a cycle: inputs and outputs of nodes
/// before `limit` in the arena.
fn readable(g: &Graph, limit: Option<NodeId>) -> Vec<ValueId> {
    let mut vs: Vec<ValueId> = g.inputs().to_vec();
    for (id, n) in g.nodes() {
        if limit.is_some_and(|l| id >= l) {
            break;
        }
        vs.extend(n.outputs.iter().copied());
    }
    vs
}

fn apply(g: &mut Graph, e: &Edit, k: &mut usize) {
    let live = g.node_ids();
    match *e {
        Edit::Add(a, b) => {
            let vs = readable(g, None);
            let (x, y) = (vs[a % vs.len()], vs[b % vs.len()]);
            *k += 1;
            g.add_node(format!("n{k}"), Op::Add, vec![x, y], vec![(format!("v{k}"), ty())]);
        }
        Edit::Rewire(n, b, s) if !live.is_empty() => {
            let id = live[n % live.len()];
            let vs = readable(g, Some(id));
            let v = vs[b % vs.len()];
            let mut node = g.node_mut(id);
            let slot = s % node.inputs.len();
            node.inputs[slot] = v;
        }
        Edit::Replace(a, b) if !live.is_empty() => {
            // Replace the output of a node by a value readable before it (keeps order).
            let id = live[a % live.len()];
            let vs = readable(g, Some(id));
            let old = g.node(id).outputs[0];
            g.replace_uses(old, vs[b % vs.len()]);
        }
        Edit::Remove(n) if !live.is_empty() => {
            let id = live[n % live.len()];
            let out = g.node(id).outputs[0];
            let first = g.inputs()[0];
            g.replace_uses(out, first);
            g.remove_node(id);
        }
        Edit::Compact => g.compact().expect("the graph has no cycle"),
        _ => {}
    }
}

proptest! {
    #[test]
    fn reader_lists_match_a_scan(edits in proptest::collection::vec(edit(), 1..60)) {
        let mut g = Graph::new("g");
        g.add_input("x", ty());
        g.add_input("y", ty());
        let mut k = 0;
        for e in &edits {
            apply(&mut g, e, &mut k);
            prop_assert_eq!(g.node_count(), g.nodes().count());
            for (v, _) in g.values() {
                let want = naive_users(&g, v);
                prop_assert_eq!(g.use_count(v), want.len());
                prop_assert_eq!(g.users(v), want, "after {:?}", e);
            }
            let order = g.topo_order().expect("no cycle");
            prop_assert_eq!(order, g.node_ids(), "the arena order is topological");
        }
    }
}

/// Kahn's order keeps the arena order where it is one, and puts a node after its producers
/// where it is not.
#[test]
fn topological_order_fixes_an_arena_out_of_order() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty());
    let a = g.add_node("a", Op::Relu, vec![x], vec![("a".into(), ty())]);
    let b = g.add_node("b", Op::Relu, vec![x], vec![("b".into(), ty())]);
    let c = g.add_node("c", Op::Relu, vec![x], vec![("c".into(), ty())]);
    // `a` now reads `c`'s output: c must come before a; b keeps its place among the rest.
    let c_out = g.node(c).outputs[0];
    g.node_mut(a).inputs[0] = c_out;
    assert_eq!(g.topo_order().unwrap(), vec![b, c, a]);
    // A cycle is named.
    let a_out = g.node(a).outputs[0];
    g.node_mut(c).inputs[0] = a_out;
    let e = g.topo_order().unwrap_err();
    assert!(e.contains("cycle"), "{e}");
}

/// A node reading a value that does not exist is named by `topo_order`, not a panic.
#[test]
fn a_reader_of_no_value_is_named() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", ty());
    let a = g.add_node("a", Op::Relu, vec![x], vec![("a".into(), ty())]);
    g.add_node("ghost", Op::Relu, vec![ValueId(999)], vec![("g".into(), ty())]);
    let a_out = g.node(a).outputs[0];
    g.add_node("late", Op::Relu, vec![a_out], vec![("l".into(), ty())]);
    // Out of order, so the heap path runs.
    g.node_mut(a).inputs[0] = g.find_value("l").unwrap();
    let e = g.topo_order().unwrap_err();
    assert!(e.contains("'a'") || e.contains("'ghost'"), "{e}");
    assert!(g.compact().is_err());
}
