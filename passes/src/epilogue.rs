//! The algebra of a matrix op's epilogue as egg rewrite rules.
//!
//! A chain of element-wise constant ops after a Conv/Gemm (`((x·a₁) + b₁)·a₂ − b₂ ...`) is a
//! small term over the op's output `x` and per-channel constant vectors. Directed rules
//! (associativity of `*` and `+` towards the constants, distribution of a scale over a bias,
//! `x·1`, `x+0`) with a constant-folding analysis rewrite it to the normal form `x·A + B`, which
//! `canonicalize` folds into the weights (`·A`) and the bias (`·A + B`). Terms are ~10 nodes and
//! saturate in well under a millisecond (`../shared/design/stack.md` §C); limits are set anyway,
//! and the result is deterministic for a fixed rule order.

use egg::{
    define_language, rewrite as rw, Analysis, AstSize, DidMerge, EGraph, Extractor, Id, RecExpr,
    Rewrite, Runner,
};
use std::fmt;
use std::str::FromStr;

/// A constant vector of the term, by index into the analysis' table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstRef(pub u32);

impl fmt::Display for ConstRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl FromStr for ConstRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('c').and_then(|n| n.parse().ok()).map(ConstRef).ok_or(())
    }
}

define_language! {
    pub enum Epi {
        "+" = Add([Id; 2]),
        "*" = Mul([Id; 2]),
        "neg" = Neg(Id),
        "recip" = Recip(Id),
        Const(ConstRef),
        Var(egg::Symbol),
    }
}

/// Constant folding over per-channel vectors (length 1 = broadcast scalar).
#[derive(Default)]
pub struct Fold {
    pub table: Vec<Vec<f64>>,
}

fn zip(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Option<Vec<f64>> {
    match (a.len(), b.len()) {
        (x, y) if x == y => Some(a.iter().zip(b).map(|(p, q)| f(*p, *q)).collect()),
        (1, _) => Some(b.iter().map(|q| f(a[0], *q)).collect()),
        (_, 1) => Some(a.iter().map(|p| f(*p, b[0])).collect()),
        _ => None,
    }
}

impl Analysis<Epi> for Fold {
    type Data = Option<Vec<f64>>;

    fn make(egraph: &mut EGraph<Epi, Self>, enode: &Epi) -> Self::Data {
        let c = |i: &Id| egraph[*i].data.clone();
        match enode {
            Epi::Const(r) => egraph.analysis.table.get(r.0 as usize).cloned(),
            Epi::Var(_) => None,
            Epi::Add([a, b]) => zip(&c(a)?, &c(b)?, |p, q| p + q),
            Epi::Mul([a, b]) => zip(&c(a)?, &c(b)?, |p, q| p * q),
            Epi::Neg(a) => Some(c(a)?.iter().map(|v| -v).collect()),
            Epi::Recip(a) => {
                let v = c(a)?;
                if v.contains(&0.0) {
                    return None;
                }
                Some(v.iter().map(|x| 1.0 / x).collect())
            }
        }
    }

    fn merge(&mut self, a: &mut Self::Data, b: Self::Data) -> DidMerge {
        if a.is_none() && b.is_some() {
            *a = b;
            DidMerge(true, false)
        } else {
            DidMerge(false, a.is_some() && b.is_none())
        }
    }

    fn modify(egraph: &mut EGraph<Epi, Self>, id: Id) {
        // A class with a known value gets a single leaf holding it, so extraction sees a constant.
        if let Some(v) = egraph[id].data.clone() {
            if egraph[id].nodes.iter().any(|n| matches!(n, Epi::Const(_))) {
                return;
            }
            let k = ConstRef(egraph.analysis.table.len() as u32);
            egraph.analysis.table.push(v);
            let leaf = egraph.add(Epi::Const(k));
            egraph.union(id, leaf);
        }
    }
}

fn is_const(v: &'static str) -> impl Fn(&mut EGraph<Epi, Fold>, Id, &egg::Subst) -> bool {
    let var: egg::Var = v.parse().expect("invariant: pattern variables parse");
    move |eg, _, s| eg[s[var]].data.is_some()
}

fn is_value(
    v: &'static str,
    target: f64,
) -> impl Fn(&mut EGraph<Epi, Fold>, Id, &egg::Subst) -> bool {
    let var: egg::Var = v.parse().expect("invariant: pattern variables parse");
    move |eg, _, s| eg[s[var]].data.as_ref().is_some_and(|d| d.iter().all(|&x| x == target))
}

/// The rules, in a fixed order.
pub fn rules() -> Vec<Rewrite<Epi, Fold>> {
    vec![
        rw!("mul-assoc"; "(* (* ?x ?a) ?b)" => "(* ?x (* ?a ?b))" if is_const("?a") if is_const("?b")),
        rw!("add-assoc"; "(+ (+ ?x ?a) ?b)" => "(+ ?x (+ ?a ?b))" if is_const("?a") if is_const("?b")),
        rw!("distribute"; "(* (+ ?x ?a) ?b)" => "(+ (* ?x ?b) (* ?a ?b))" if is_const("?a") if is_const("?b")),
        rw!("mul-one"; "(* ?x ?a)" => "?x" if is_value("?a", 1.0)),
        rw!("add-zero"; "(+ ?x ?a)" => "?x" if is_value("?a", 0.0)),
    ]
}

/// The normal form of an epilogue: `x·scale + shift`, per channel (length 1 = all channels).
#[derive(Debug, PartialEq)]
pub struct Affine {
    pub scale: Option<Vec<f64>>,
    pub shift: Option<Vec<f64>>,
}

/// Simplifies `expr` (built over `Var("x")` and constants in `table`) and reads it as
/// `x·A + B`; `None` when it does not reduce to that form.
pub fn normalize(expr: &RecExpr<Epi>, table: Vec<Vec<f64>>) -> Option<Affine> {
    let runner = Runner::<Epi, Fold, ()>::new(Fold { table })
        .with_iter_limit(16)
        .with_node_limit(2_000)
        .with_time_limit(std::time::Duration::from_millis(200))
        .with_expr(expr)
        .run(&rules());
    let root = runner.roots[0];
    let best = Extractor::new(&runner.egraph, AstSize).find_best(root).1;
    let table = &runner.egraph.analysis.table;
    let nodes = best.as_ref();
    let value = |i: Id| match &nodes[usize::from(i)] {
        Epi::Const(r) => table.get(r.0 as usize).cloned(),
        _ => None,
    };
    let is_x = |i: Id| matches!(nodes[usize::from(i)], Epi::Var(_));
    let scaled = |i: Id| -> Option<Option<Vec<f64>>> {
        match &nodes[usize::from(i)] {
            Epi::Var(_) => Some(None),
            Epi::Mul([a, b]) if is_x(*a) => value(*b).map(Some),
            Epi::Mul([a, b]) if is_x(*b) => value(*a).map(Some),
            _ => None,
        }
    };
    let top = Id::from(nodes.len() - 1);
    if let Some(scale) = scaled(top) {
        return Some(Affine { scale, shift: None });
    }
    match &nodes[usize::from(top)] {
        Epi::Add([a, b]) => {
            if let (Some(scale), Some(shift)) = (scaled(*a), value(*b)) {
                return Some(Affine { scale, shift: Some(shift) });
            }
            if let (Some(scale), Some(shift)) = (scaled(*b), value(*a)) {
                return Some(Affine { scale, shift: Some(shift) });
            }
            None
        }
        _ => None,
    }
}

/// Builds an epilogue term step by step.
pub struct TermBuilder {
    pub expr: RecExpr<Epi>,
    pub table: Vec<Vec<f64>>,
    top: Id,
}

impl Default for TermBuilder {
    fn default() -> Self {
        TermBuilder::new()
    }
}

impl TermBuilder {
    pub fn new() -> TermBuilder {
        let mut expr = RecExpr::default();
        let top = expr.add(Epi::Var(egg::Symbol::from("x")));
        TermBuilder { expr, table: Vec::new(), top }
    }

    fn constant(&mut self, v: Vec<f64>) -> Id {
        let k = ConstRef(self.table.len() as u32);
        self.table.push(v);
        self.expr.add(Epi::Const(k))
    }

    pub fn mul(&mut self, v: Vec<f64>) {
        let c = self.constant(v);
        self.top = self.expr.add(Epi::Mul([self.top, c]));
    }

    pub fn add(&mut self, v: Vec<f64>) {
        let c = self.constant(v);
        self.top = self.expr.add(Epi::Add([self.top, c]));
    }

    pub fn sub(&mut self, v: Vec<f64>) {
        let c = self.constant(v);
        let n = self.expr.add(Epi::Neg(c));
        self.top = self.expr.add(Epi::Add([self.top, n]));
    }

    pub fn div(&mut self, v: Vec<f64>) {
        let c = self.constant(v);
        let r = self.expr.add(Epi::Recip(c));
        self.top = self.expr.add(Epi::Mul([self.top, r]));
    }

    pub fn len(&self) -> usize {
        self.expr.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_normalizes_to_affine() {
        // ((x·2 + 1)·3 − 4) / 2 = x·3 + (3 − 4)/2 = x·3 − 0.5
        let mut t = TermBuilder::new();
        t.mul(vec![2.0]);
        t.add(vec![1.0]);
        t.mul(vec![3.0]);
        t.sub(vec![4.0]);
        t.div(vec![2.0]);
        let a = normalize(&t.expr, t.table.clone()).unwrap();
        assert_eq!(a.scale, Some(vec![3.0]));
        assert_eq!(a.shift, Some(vec![-0.5]));
    }

    #[test]
    fn per_channel_vectors_broadcast() {
        let mut t = TermBuilder::new();
        t.add(vec![1.0, 2.0]);
        t.mul(vec![2.0]);
        let a = normalize(&t.expr, t.table.clone()).unwrap();
        assert_eq!(a.scale, Some(vec![2.0]));
        assert_eq!(a.shift, Some(vec![2.0, 4.0]));
    }

    #[test]
    fn identity_rules() {
        let mut t = TermBuilder::new();
        t.mul(vec![1.0]);
        t.add(vec![0.0]);
        let a = normalize(&t.expr, t.table.clone()).unwrap();
        assert_eq!(a, Affine { scale: None, shift: None });
    }
}
