//! The search of `mixed-precision`: a deterministic multiple-choice knapsack.
//!
//! Every layer takes exactly one of its options (a width, or a pair of widths), each with an
//! integer cost and a value (the predicted increase of the network's error); the search returns
//! the `k` assignments of smallest total value whose total cost stays within the budget, by
//! dynamic programming over the cost: `best[l][c]` holds the `k` best values of the first `l`
//! layers with total cost at most `c`, with back-pointers. It is exact for integer costs, and
//! costs `O(layers · budget · options · k)`.
//!
//! Costs in any unit are brought to at most `max_cells` integer cells by [`discretize`]: each
//! layer's cheapest option is subtracted (it is paid in any case), then costs are divided by
//! their greatest common divisor when they are integers (exact), else — or when that leaves too
//! many cells — by `rest / max_cells`, costs rounded up and the budget down, so that every
//! assignment found also fits the budget in the original unit.

/// One option of a layer: its cost in cells and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Item {
    pub cost: u64,
    pub value: f64,
}

/// An assignment found by the search: its total value and one option index per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    pub value: f64,
    pub choice: Vec<usize>,
}

/// One entry of a cell: a total value, the option taken at this layer, and the rank of the
/// entry it extends in the previous layer's cell.
#[derive(Clone, Copy)]
struct Entry {
    value: f64,
    option: u32,
    rank: u32,
}

/// The `k` assignments of smallest total value with total cost at most `budget`, best first
/// (ties: the smaller option index at the last layer, then at the layers before). Empty when no
/// assignment fits, or when a layer has no option.
pub fn k_best(layers: &[Vec<Item>], budget: u64, k: usize) -> Vec<Solution> {
    if k == 0 || layers.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    // No cell beyond the most expensive assignment is needed.
    let max_total: u64 = layers.iter().map(|o| o.iter().map(|i| i.cost).max().unwrap_or(0)).sum();
    let cells = budget.min(max_total) as usize + 1;
    let mut prev: Vec<Vec<Entry>> = vec![vec![Entry { value: 0.0, option: 0, rank: 0 }]; cells];
    // back[l][c]: the entries of layer l's cell c.
    let mut back: Vec<Vec<Vec<Entry>>> = Vec::with_capacity(layers.len());
    let mut cand: Vec<Entry> = Vec::new();
    for options in layers {
        let mut cur: Vec<Vec<Entry>> = Vec::with_capacity(cells);
        for c in 0..cells {
            cand.clear();
            for (j, it) in options.iter().enumerate() {
                let Some(rest) = (c as u64).checked_sub(it.cost) else { continue };
                for (r, e) in prev[rest as usize].iter().enumerate() {
                    cand.push(Entry {
                        value: e.value + it.value,
                        option: j as u32,
                        rank: r as u32,
                    });
                }
            }
            cand.sort_by(|a, b| {
                a.value.total_cmp(&b.value).then(a.option.cmp(&b.option)).then(a.rank.cmp(&b.rank))
            });
            cand.truncate(k);
            cur.push(cand.clone());
        }
        back.push(prev);
        prev = cur;
    }
    back.push(prev);
    // Walk back from the last layer's cell at the budget. Entry `rank` of cell `c` of layer `l`
    // extends entry `e.rank` of cell `c − cost` of layer `l − 1`.
    let last = cells - 1;
    let n = layers.len();
    (0..back[n][last].len())
        .map(|top| {
            let mut choice = vec![0; n];
            let (mut c, mut r) = (last, top);
            for l in (0..n).rev() {
                let e = back[l + 1][c][r];
                choice[l] = e.option as usize;
                c -= layers[l][e.option as usize].cost as usize;
                r = e.rank as usize;
            }
            Solution { value: back[n][last][top].value, choice }
        })
        .collect()
}

/// Costs in the budget's unit, discretized.
#[derive(Clone, Debug)]
pub struct Discrete {
    pub layers: Vec<Vec<Item>>,
    pub budget: u64,
    /// The size of one cell in the original unit.
    pub unit: f64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `costs[l][j]` (≥ 0, finite) and `values[l][j]` under `budget` as at most about `max_cells`
/// cells; `None` when even the cheapest option of every layer exceeds the budget.
pub fn discretize(
    costs: &[Vec<f64>],
    values: &[Vec<f64>],
    budget: f64,
    max_cells: u64,
) -> Option<Discrete> {
    let offsets: Vec<f64> =
        costs.iter().map(|c| c.iter().copied().fold(f64::INFINITY, f64::min)).collect();
    let rest = budget - offsets.iter().sum::<f64>();
    if !rest.is_finite() || rest < 0.0 {
        return None;
    }
    let shifted: Vec<Vec<f64>> =
        costs.iter().zip(&offsets).map(|(c, o)| c.iter().map(|x| x - o).collect()).collect();
    let integral = |x: f64| x.fract() == 0.0 && x < (1u64 << 52) as f64;
    let max_cells = max_cells.max(1);
    if shifted.iter().flatten().all(|&x| integral(x)) {
        let g = shifted.iter().flatten().fold(0u64, |g, &x| gcd(g, x as u64)).max(1);
        let cells = rest.floor() as u64 / g;
        if cells <= max_cells {
            let layers = shifted
                .iter()
                .zip(values)
                .map(|(c, v)| {
                    c.iter().zip(v).map(|(&x, &v)| Item { cost: x as u64 / g, value: v }).collect()
                })
                .collect();
            return Some(Discrete { layers, budget: cells, unit: g as f64 });
        }
    }
    let unit = if rest > 0.0 { rest / max_cells as f64 } else { 1.0 };
    let layers = shifted
        .iter()
        .zip(values)
        .map(|(c, v)| {
            c.iter()
                .zip(v)
                .map(|(&x, &v)| Item { cost: (x / unit).ceil() as u64, value: v })
                .collect()
        })
        .collect();
    Some(Discrete { layers, budget: (rest / unit).floor() as u64, unit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every assignment's (value, cost), by enumeration.
    fn all(layers: &[Vec<Item>]) -> Vec<(f64, u64, Vec<usize>)> {
        let mut out = vec![(0.0, 0, Vec::new())];
        for opts in layers {
            let mut next = Vec::new();
            for (v, c, ch) in &out {
                for (j, it) in opts.iter().enumerate() {
                    let mut ch = ch.clone();
                    ch.push(j);
                    next.push((v + it.value, c + it.cost, ch));
                }
            }
            out = next;
        }
        out
    }

    fn instance() -> impl Strategy<Value = (Vec<Vec<Item>>, u64, usize)> {
        let item =
            (0u64..12, -50i32..100).prop_map(|(c, v)| Item { cost: c, value: v as f64 / 8.0 });
        (prop::collection::vec(prop::collection::vec(item, 1..5), 1..6), 0u64..40, 1usize..5)
    }

    proptest! {
        #[test]
        fn k_best_is_brute_force((layers, budget, k) in instance()) {
            let got = k_best(&layers, budget, k);
            let mut want: Vec<f64> =
                all(&layers).into_iter().filter(|x| x.1 <= budget).map(|x| x.0).collect();
            want.sort_by(f64::total_cmp);
            want.truncate(k);
            prop_assert_eq!(got.len(), want.len());
            let mut seen = Vec::new();
            for (s, w) in got.iter().zip(&want) {
                prop_assert!((s.value - w).abs() < 1e-9, "{} vs {}", s.value, w);
                let cost: u64 = s.choice.iter().zip(&layers).map(|(&j, o)| o[j].cost).sum();
                let value: f64 = s.choice.iter().zip(&layers).map(|(&j, o)| o[j].value).sum();
                prop_assert!(cost <= budget);
                prop_assert!((value - s.value).abs() < 1e-9);
                prop_assert!(!seen.contains(&s.choice), "the same assignment twice");
                seen.push(s.choice.clone());
            }
        }

        #[test]
        fn discretized_solutions_fit_the_budget(
            costs in prop::collection::vec(prop::collection::vec(0.0f64..1e6, 1..4), 1..6),
            frac in 0.0f64..1.2,
            cells in 1u64..500,
        ) {
            let values: Vec<Vec<f64>> =
                costs.iter().map(|c| c.iter().map(|x| -x.sqrt()).collect()).collect();
            let lo: f64 = costs.iter().map(|c| c.iter().copied().fold(f64::INFINITY, f64::min)).sum();
            let hi: f64 = costs.iter().map(|c| c.iter().copied().fold(0.0, f64::max)).sum();
            let budget = lo + frac * (hi - lo);
            let d = discretize(&costs, &values, budget, cells).expect("the minimum fits");
            prop_assert!(d.budget <= cells.max(1) + 1);
            for s in k_best(&d.layers, d.budget, 3) {
                let cost: f64 = s.choice.iter().zip(&costs).map(|(&j, c)| c[j]).sum();
                prop_assert!(cost <= budget * (1.0 + 1e-9) + 1e-6, "{cost} > {budget}");
            }
        }
    }

    #[test]
    fn integer_costs_are_exact() {
        // params x bits with a common factor: the gcd keeps the search exact.
        let costs = vec![vec![18.0, 36.0, 72.0], vec![900.0, 1800.0, 3600.0]];
        let values = vec![vec![3.0, 1.0, 0.0], vec![6.0, 2.0, 0.0]];
        let d = discretize(&costs, &values, 1818.0, 20_000).unwrap();
        assert_eq!(d.unit, 18.0);
        let s = k_best(&d.layers, d.budget, 2);
        assert_eq!(s[0].choice, vec![0, 1]);
        assert_eq!(s[0].value, 5.0);
        assert!(discretize(&costs, &values, 900.0, 20_000).is_none());
    }
}
