//! The costs of `mixed-precision`: what each option of a layer is predicted to cost, and what
//! an assignment really costs, in the budget's unit.

use super::measure::{Assignment, Source};
use super::{Analysis, Options};
use crate::config::Budget;
use crate::error::{PassError, Result};
use rayon::prelude::*;

impl Analysis<'_> {
    pub(super) fn params(&self) -> f64 {
        self.bench.layers.iter().map(|l| l.params as f64).sum()
    }

    /// The budget in its cost unit.
    pub(super) fn limit(&self, budget: Budget) -> f64 {
        match budget {
            Budget::WeightBits(x) => x * self.params(),
            Budget::Arrays(n) => n as f64,
            Budget::Energy(e) => e,
        }
    }

    /// A cost in the budget's own unit (average bits for weight bits).
    pub(super) fn in_budget_unit(&self, budget: Budget, cost: f64) -> f64 {
        match budget {
            Budget::WeightBits(_) => cost / self.params().max(1.0),
            _ => cost,
        }
    }

    /// Every layer that is not pinned at weight width `w`, activations as configured.
    pub(super) fn uniform(&self, w: u8) -> Assignment {
        self.with_w(&self.bench.default_assignment(), w)
    }

    /// `at` with the weights of every layer that is not pinned at `w`.
    pub(super) fn with_w(&self, at: &Assignment, w: u8) -> Assignment {
        at.iter().zip(&self.wopts).map(|(x, o)| (if o.len() > 1 { w } else { x.0 }, x.1)).collect()
    }

    /// `at` with the activation of every layer that may take `a` at `a`.
    pub(super) fn with_a(&self, at: &Assignment, a: u8) -> Assignment {
        at.iter()
            .zip(&self.aopts)
            .map(|(x, o)| (x.0, if o.len() > 1 && o.iter().any(|y| y.0 == a) { a } else { x.1 }))
            .collect()
    }

    /// Per layer and option, the predicted cost; and the cost of what the layers do not
    /// choose (other layers, digital steps). Energy is linearized at `at`: a layer's option
    /// costs its own energy with its input as in `at`, plus the change its activation width
    /// makes to the layers that read it (their weights as in `at`).
    pub(super) fn costs(
        &self,
        budget: Budget,
        opts: &Options,
        at: &Assignment,
    ) -> Result<(Vec<Vec<f64>>, f64)> {
        let b = &self.bench;
        let layers = &b.layers;
        let widths: Vec<u8> = {
            let mut v: Vec<u8> = self.wopts.iter().flatten().map(|x| x.0).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let def = b.default_assignment();
        match budget {
            Budget::WeightBits(_) => Ok((
                opts.iter()
                    .zip(layers)
                    .map(|(o, l)| o.iter().map(|x| l.params as f64 * x.0 as f64).collect())
                    .collect(),
                0.0,
            )),
            Budget::Arrays(_) => {
                let per: Vec<(u8, Vec<usize>)> = widths
                    .par_iter()
                    .map(|&w| Ok((w, b.arrays(&self.uniform(w))?.0)))
                    .collect::<Result<_>>()?;
                let at =
                    |l: usize, w: u8| per.iter().find(|p| p.0 == w).map_or(0, |p| p.1[l]) as f64;
                let (alone, total) = b.arrays(&def)?;
                let fixed = total as f64 - alone.iter().sum::<usize>() as f64;
                let c =
                    opts.iter().enumerate().map(|(l, o)| o.iter().map(|x| at(l, x.0)).collect());
                Ok((c.collect(), fixed))
            }
            Budget::Energy(_) => {
                // own[l](w): the layer at w, its input as in `at`; input[c](a): a consumer of a
                // chosen layer's activation at a, its weights as in `at`.
                let (own, input, base, fixed): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>, f64) =
                    if b.chip().is_some() {
                        let (base, total) = b.energy(at)?;
                        let mut awidths: Vec<u8> =
                            self.aopts.iter().flatten().map(|x| x.0).collect();
                        awidths.sort_unstable();
                        awidths.dedup();
                        let own: Vec<(u8, Vec<f64>)> = widths
                            .par_iter()
                            .map(|&w| Ok((w, b.energy(&self.with_w(at, w))?.0)))
                            .collect::<Result<_>>()?;
                        let inp: Vec<(u8, Vec<f64>)> = awidths
                            .par_iter()
                            .map(|&a| Ok((a, b.energy(&self.with_a(at, a))?.0)))
                            .collect::<Result<_>>()?;
                        let pick = |t: &[(u8, Vec<f64>)], l: usize| -> Vec<f64> {
                            (0..=16u8)
                                .map(|w| t.iter().find(|p| p.0 == w).map_or(f64::NAN, |p| p.1[l]))
                                .collect()
                        };
                        let fixed = total - base.iter().sum::<f64>();
                        (
                            (0..layers.len()).map(|l| pick(&own, l)).collect(),
                            (0..layers.len()).map(|l| pick(&inp, l)).collect(),
                            base,
                            fixed,
                        )
                    } else {
                        let in_def = |l: usize| match layers[l].input {
                            Source::Layer(p) => at[p].1,
                            Source::Bits(x) => x,
                        } as f64;
                        let own = (0..layers.len())
                            .map(|l| {
                                (0..=16u8)
                                    .map(|w| layers[l].macs as f64 * w as f64 * in_def(l))
                                    .collect()
                            })
                            .collect();
                        let input = (0..layers.len())
                            .map(|c| {
                                (0..=16u8)
                                    .map(|a| layers[c].macs as f64 * at[c].0 as f64 * a as f64)
                                    .collect()
                            })
                            .collect();
                        let base = (0..layers.len())
                            .map(|c| layers[c].macs as f64 * at[c].0 as f64 * in_def(c))
                            .collect();
                        (own, input, base, 0.0)
                    };
                let consumers: Vec<Vec<usize>> = (0..layers.len())
                    .map(|l| {
                        (0..layers.len()).filter(|&c| layers[c].input == Source::Layer(l)).collect()
                    })
                    .collect();
                let c = opts.iter().enumerate().map(|(l, o)| {
                    o.iter()
                        .map(|&(w, a, _)| {
                            own[l][w as usize]
                                + consumers[l]
                                    .iter()
                                    .map(|&c| input[c][a as usize] - base[c])
                                    .sum::<f64>()
                        })
                        .collect::<Vec<f64>>()
                });
                let c: Vec<Vec<f64>> = c.collect();
                // Costs may be negative (an activation narrower than the default makes its
                // consumers cheaper); the knapsack takes each layer's cheapest as its offset.
                if c.iter().flatten().any(|x| !x.is_finite()) {
                    return Err(PassError::Internal(
                        "mixed-precision: an energy is missing".into(),
                    ));
                }
                Ok((c, fixed))
            }
        }
    }

    /// The real cost of `a`.
    pub(super) fn exact(&self, budget: Budget, a: &Assignment) -> Result<f64> {
        let b = &self.bench;
        Ok(match budget {
            Budget::WeightBits(_) => {
                b.layers.iter().zip(a).map(|(l, x)| l.params as f64 * x.0 as f64).sum()
            }
            Budget::Arrays(_) => b.arrays(a)?.1 as f64,
            Budget::Energy(_) if b.chip().is_some() => b.energy(a)?.1,
            Budget::Energy(_) => b.bit_ops(a),
        })
    }
}
