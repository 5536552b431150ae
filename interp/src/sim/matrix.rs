//! `mvm`: a crossbar group's matrix-vector products, with the program's kernels.
//!
//! A group's numerics are fixed by its `xbar_config` and the `adc_step`s after it; the first
//! `mvm` after them prepares the group (weights as bit planes for the crossbar kernel of
//! `program::crossbar`, or as f64 for an exact GEMM when every conversion is lossless, as the
//! program does) and keeps the preparation in the runner's cache, keyed by the group and its
//! whole configuration, so later runs and later configurations equal to an earlier one reuse it.

use crate::ops::gemm::{gemm, Mat};
use crate::program::crossbar::PreparedCrossbar;
use crate::program::crossbar::{prepare_matrix, run_vectors, MatrixSpec, Source};
use crate::program::kernels::exact_in_f64;
use cimc_backends::program::{Crossbar, Encoding};
use cimc_backends::stream::GroupEntry;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A group's numerics while a stream runs: what its `xbar_config` and `adc_step`s set.
#[derive(Clone)]
pub(super) struct GroupConfig {
    pub x: Crossbar,
    /// `z_x`, the input zero point.
    pub z: i32,
    /// The group's column groups (what `adc_step` numbers).
    pub column_groups: usize,
    /// The preparation for this configuration, once an `mvm` has needed it.
    pub prepared: Option<Arc<Prepared>>,
}

impl GroupConfig {
    /// Sets the ADC step of one column group (the layer's step becomes per column group).
    pub fn set_step(&mut self, column_group: usize, step: u32) -> Result<(), String> {
        if column_group >= self.column_groups {
            return Err(format!(
                "column group {column_group} of a group with {}",
                self.column_groups
            ));
        }
        if self.x.adc_step.len() == 1 {
            self.x.adc_step = vec![self.x.adc_step[0]; self.column_groups];
        }
        self.x.adc_step[column_group] = step;
        self.prepared = None;
        Ok(())
    }

    /// The cache key: the group and every number of its configuration (ADC steps that are all
    /// equal count as one step for the layer, which computes the same).
    fn key(&self, group: u16) -> Key {
        let x = &self.x;
        let mut steps = x.adc_step.clone();
        if steps.iter().all(|&e| Some(&e) == steps.first()) {
            steps.truncate(1);
        }
        Key {
            group,
            numbers: [
                x.rows as i64,
                x.cols as i64,
                x.cell_bits as i64,
                x.dac_bits as i64,
                x.adc_bits as i64,
                x.weight_bits as i64,
                x.magnitude_bits as i64,
                x.input_bits as i64,
                x.input_min as i64,
                self.z as i64,
                (x.encoding == Encoding::Offset) as i64,
            ],
            steps,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    group: u16,
    numbers: [i64; 11],
    steps: Vec<u32>,
}

/// Prepared groups, shared by the runs of one [`super::StreamRunner`].
pub(super) type Cache = Mutex<HashMap<Key, Arc<Prepared>>>;

/// A group ready for `mvm`.
pub(super) enum Prepared {
    /// Every conversion is exact and the products sum exactly in f64: one GEMM per conv group
    /// computes `Σ_k (q − z_x)·w[k, n]`, which is what the crossbar computes then.
    Exact {
        /// Per conv group, `[outputs][k]` row-major: the group entry's weights as f64.
        w: Vec<f64>,
        z: i32,
        input_min: i32,
        vmax: i64,
    },
    /// The crossbar arithmetic, bit planes and all (no bias: the stream adds it in `requant`).
    Crossbar(PreparedCrossbar),
}

/// The preparation of `group` under `cfg`: from the cache, or made now and cached.
pub(super) fn prepared(
    cache: &Cache,
    group: u16,
    g: &GroupEntry,
    cfg: &mut GroupConfig,
) -> Result<Arc<Prepared>, String> {
    if let Some(p) = &cfg.prepared {
        return Ok(p.clone());
    }
    let key = cfg.key(group);
    let hit = cache.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
    let p = match hit {
        Some(p) => p,
        None => {
            let p = Arc::new(prepare(g, &cfg.x, cfg.z)?);
            cache.lock().unwrap_or_else(PoisonError::into_inner).insert(key, p.clone());
            p
        }
    };
    cfg.prepared = Some(p.clone());
    Ok(p)
}

fn prepare(g: &GroupEntry, x: &Crossbar, z: i32) -> Result<Prepared, String> {
    let (k, n, groups) = (g.k as usize, g.n as usize, g.conv_groups as usize);
    if groups == 0 || n % groups != 0 || g.weights.len() != n * k {
        return Err(format!(
            "{} weights do not make {groups} conv group(s) of {k} rows",
            g.weights.len()
        ));
    }
    let vmax = (1i64 << x.input_bits.min(62)) - 1;
    let bound_x =
        (x.input_min as i64 - z as i64).abs().max((x.input_min as i64 + vmax - z as i64).abs());
    let bound_w = g.weights.iter().map(|&w| (w as i64).abs()).max().unwrap_or(0);
    if x.is_lossless(k) && exact_in_f64(k, bound_x, bound_w) {
        x.validate().map_err(|m| format!("crossbar: {m}"))?;
        return Ok(Prepared::Exact {
            w: g.weights.iter().map(|&w| w as f64).collect(),
            z,
            input_min: x.input_min,
            vmax,
        });
    }
    let w = &g.weights;
    let spec = MatrixSpec {
        x,
        k,
        m: n,
        groups,
        w_at: |r: usize, o: usize| w[o * k + r],
        input_zero: z,
        bias: &[],
    };
    prepare_matrix(&spec).map(Prepared::Crossbar)
}

/// `mvm`: `count` vectors of `mem` from `src` (the group's strides), `n` accumulators per vector
/// to `dst`. Every range is checked (an error, never a panic).
pub(super) fn mvm(
    p: &Prepared,
    g: &GroupEntry,
    mem: &mut [i64],
    src: usize,
    dst: usize,
    count: usize,
) -> Result<(), String> {
    if count == 0 {
        return Ok(());
    }
    let (k, n, groups) = (g.k as usize, g.n as usize, g.conv_groups as usize);
    let (in_stride, group_stride, out_stride) =
        (g.in_stride as usize, g.group_stride as usize, g.out_stride as usize);
    let base = src + g.in_offset as usize;
    let wide = |v: usize| v as u128;
    let last = wide(count - 1);
    let last_in = wide(base) + last * wide(in_stride) + wide(groups - 1) * wide(group_stride);
    let last_in = last_in + wide(k);
    let last_out = wide(dst) + last * wide(out_stride) + wide(n);
    if last_in > wide(mem.len()) || last_out > wide(mem.len()) {
        return Err(format!(
            "words up to {last_in} read, up to {last_out} written: the scratchpad has {}",
            mem.len()
        ));
    }
    match p {
        Prepared::Crossbar(pc) => {
            let source = Source::Words { x: mem, base, in_stride, group_stride };
            let outs = run_vectors(pc, &source, count, None, &|acc, _| acc)?;
            outs.for_each(|v, n0, vals| {
                let at = dst + v * out_stride + n0;
                mem[at..at + vals.len()].copy_from_slice(vals);
            });
        }
        Prepared::Exact { w, z, input_min, vmax } => {
            let mg = n / groups;
            let mut x = vec![0f64; count * k];
            let mut acc = vec![0f64; count * mg];
            for gi in 0..groups {
                let mem_ro: &[i64] = mem;
                x.par_chunks_mut(k).enumerate().try_for_each(|(v, row)| {
                    let at = base + v * in_stride + gi * group_stride;
                    for (d, &q) in row.iter_mut().zip(&mem_ro[at..at + k]) {
                        if !(0..=*vmax).contains(&q.wrapping_sub(*input_min as i64)) {
                            return Err(format!(
                                "crossbar: input code {q} minus input_min {input_min} does not fit the input bits"
                            ));
                        }
                        *d = (q - *z as i64) as f64;
                    }
                    Ok(())
                })?;
                let wg = &w[gi * mg * k..][..mg * k];
                gemm(count, k, mg, 1.0, Mat::rows(&x, k), Mat::rows_t(wg, k), 0.0, &mut acc, mg);
                for v in 0..count {
                    let at = dst + v * out_stride + gi * mg;
                    for (o, &a) in mem[at..at + mg].iter_mut().zip(&acc[v * mg..][..mg]) {
                        *o = a as i64;
                    }
                }
            }
        }
    }
    Ok(())
}
