//! Helpers shared by the IR's integration tests.
#![allow(dead_code)]

use cimc_ir::{Graph, ValueDef, ValueId};

/// `%name`, `@name` or `<bad id>`, plus the type, for comparisons by name.
fn describe(g: &Graph, id: ValueId) -> String {
    if id.index() >= g.value_count() {
        return format!("<bad id {}>", id.0);
    }
    let v = g.value(id);
    let kind = match &v.def {
        ValueDef::Input => "input",
        ValueDef::Const(_) => "const",
        ValueDef::Node { .. } => "node",
    };
    format!("{kind} {:?} : {:?}", v.name, v.ty)
}

/// Asserts that two graphs are the same structurally: graph name, inputs, constants (with their
/// bytes), nodes in order (name, op, inputs, outputs) and outputs, comparing values by name and
/// type (ids may differ when one graph is not in canonical order).
pub fn assert_same_graph(a: &Graph, b: &Graph) {
    assert_eq!(a.name, b.name, "graph name");
    let ins = |g: &Graph| g.inputs().iter().map(|&v| describe(g, v)).collect::<Vec<_>>();
    assert_eq!(ins(a), ins(b), "inputs");
    let consts = |g: &Graph| {
        g.values()
            .filter_map(|(id, v)| {
                v.const_data()
                    .map(|d| (describe(g, id), d.dtype(), d.shape().to_vec(), d.raw().to_vec()))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(consts(a), consts(b), "constants");
    let nodes = |g: &Graph| {
        g.nodes()
            .map(|(_, n)| {
                let ins: Vec<String> = n.inputs.iter().map(|&v| describe(g, v)).collect();
                let outs: Vec<String> = n.outputs.iter().map(|&v| describe(g, v)).collect();
                (n.name.clone(), format!("{:?}", n.op), ins, outs)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(nodes(a), nodes(b), "nodes");
    let outs = |g: &Graph| g.outputs().iter().map(|&v| describe(g, v)).collect::<Vec<_>>();
    assert_eq!(outs(a), outs(b), "outputs");
}

/// Every `.cir` file of `tests/cases/`, sorted, with its text.
pub fn cases() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cir"))
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (name, std::fs::read_to_string(&p).expect("readable case"))
        })
        .collect();
    out.sort();
    out
}
