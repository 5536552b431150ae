//! `mvm`: a crossbar group's matrix-vector products, with the program's kernels.
//!
//! A group's numerics are fixed by its `xbar_config` and the `adc_step`s after it; the first
//! `mvm` after them prepares the group (weights as bit planes for the crossbar kernel of
//! `program::crossbar`, or as f64 for an exact GEMM when every conversion is lossless, as the
//! program does) and keeps the preparation in the runner's cache, keyed by the group and its
//! whole configuration, so later runs and later configurations equal to an earlier one reuse it.

use crate::program::crossbar::PreparedCrossbar;
use crate::program::crossbar::{prepare_matrix, run_vectors, MatrixSpec, Outputs, Planes, Source};
use crate::program::kernels::exact_in_f64;
use cimc_backends::program::Crossbar;
use cimc_backends::stream::GroupEntry;
use cimc_interp::gemm::{gemm, Mat};
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
                x.geometry.rows as i64,
                x.geometry.cols as i64,
                x.geometry.cell_bits as i64,
                x.geometry.dac_bits as i64,
                x.geometry.adc_bits as i64,
                x.weight_bits as i64,
                x.magnitude_bits as i64,
                x.input_bits as i64,
                x.input_min as i64,
                self.z as i64,
                x.geometry.encoding as i64,
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

/// Outputs per conv group from which an exact `mvm` multiplies with a GEMM (below: integer dot
/// products).
const GEMM_MIN_OUTPUTS: usize = 8;

/// A group ready for `mvm`. (One per configured group, a handful per stream: the size
/// difference of the variants costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Prepared {
    /// Every conversion is exact and the products sum exactly in f64: one GEMM per conv group
    /// computes `Σ_k (q − z_x)·w[k, n]`, which is what the crossbar computes then.
    Exact {
        /// Per conv group, `[outputs][k]` row-major: the group entry's weights as f64 (for the
        /// GEMM) and as they are (for dot products).
        w: Vec<f64>,
        wi: Vec<i32>,
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
            wi: g.weights.clone(),
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

/// The accumulators of one `mvm`, computed before any is written (so the instruction reads all
/// its inputs first, whatever its output overlaps).
pub(super) enum Accumulators {
    Crossbar(Outputs<i64>),
    /// `[vector][output]`.
    Exact {
        acc: Vec<i64>,
        n: usize,
    },
}

/// `mvm`: the `n` accumulators of each of `count` vectors of `src` (whose input planes, for
/// the crossbar, may have been made already).
pub(super) fn mvm(
    p: &Prepared,
    g: &GroupEntry,
    src: &Source,
    planes: Option<&Planes>,
    count: usize,
) -> Result<Accumulators, String> {
    let (k, n, groups) = (g.k as usize, g.n as usize, g.conv_groups as usize);
    if groups == 0 || n % groups != 0 {
        return Err(format!("{n} outputs in {groups} conv groups"));
    }
    match p {
        Prepared::Crossbar(pc) => {
            Ok(Accumulators::Crossbar(run_vectors(pc, src, planes, count, None, &|acc, _| acc)?))
        }
        Prepared::Exact { w, wi, z, input_min, vmax } => {
            let mg = n / groups;
            let z = *z as i64;
            // One input row, checked against the crossbar's input range, minus z_x.
            let gather = |v: usize, gi: usize, row: &mut dyn FnMut(usize, i64)| {
                let mut bad = None;
                src.for_row(v, gi, k, |r, q| {
                    if !(0..=*vmax).contains(&q.wrapping_sub(*input_min as i64)) {
                        bad = Some(q);
                    }
                    row(r, q - z);
                })?;
                match bad {
                    Some(q) => Err(format!(
                        "crossbar: input code {q} minus input_min {input_min} does not fit the input bits"
                    )),
                    None => Ok(()),
                }
            };
            let mut acc = vec![0i64; count * n];
            if mg < GEMM_MIN_OUTPUTS {
                // Few outputs per conv group (depthwise): integer dot products, vector by
                // vector; a GEMM per conv group would cost more to call than to compute.
                let mut x = vec![0i64; count * k];
                acc.par_chunks_mut(n.max(1))
                    .zip(x.par_chunks_mut(k.max(1)))
                    .enumerate()
                    .with_min_len(16)
                    .try_for_each(|(v, (out, row))| {
                        for gi in 0..groups {
                            gather(v, gi, &mut |r, d| row[r] = d)?;
                            for (o, a) in out[gi * mg..][..mg].iter_mut().enumerate() {
                                let wr = &wi[(gi * mg + o) * k..][..k];
                                *a = row.iter().zip(wr).map(|(&x, &w)| x * w as i64).sum();
                            }
                        }
                        Ok::<(), String>(())
                    })?;
            } else {
                let mut x = vec![0f64; count * k];
                let mut c = vec![0f64; count * mg];
                for gi in 0..groups {
                    x.par_chunks_mut(k.max(1))
                        .enumerate()
                        .try_for_each(|(v, row)| gather(v, gi, &mut |r, d| row[r] = d as f64))?;
                    let wg = &w[gi * mg * k..][..mg * k];
                    gemm(count, k, mg, 1.0, Mat::rows(&x, k), Mat::rows_t(wg, k), 0.0, &mut c, mg);
                    for (out, cv) in acc.chunks_exact_mut(n).zip(c.chunks_exact(mg)) {
                        for (a, &v) in out[gi * mg..][..mg].iter_mut().zip(cv) {
                            *a = v as i64;
                        }
                    }
                }
            }
            Ok(Accumulators::Exact { acc, n })
        }
    }
}

impl Accumulators {
    /// Writes output `o` of vector `v` to `mem[dst + v·out_stride + o]`.
    pub(super) fn write(
        &self,
        mem: &mut [i64],
        dst: usize,
        out_stride: usize,
    ) -> Result<(), String> {
        let mut bad = false;
        let mut put = |v: usize, n0: usize, vals: &mut dyn Iterator<Item = i64>| {
            let at = dst + v * out_stride + n0;
            let (lo, hi) = vals.size_hint();
            let len = hi.unwrap_or(lo);
            match mem.get_mut(at..at + len) {
                Some(d) => d.iter_mut().zip(vals).for_each(|(d, v)| *d = v),
                None => bad = true,
            }
        };
        match self {
            Accumulators::Crossbar(outs) => {
                outs.for_each(|v, n0, vals| put(v, n0, &mut vals.iter().copied()));
            }
            Accumulators::Exact { acc, n } => {
                for (v, row) in acc.chunks_exact((*n).max(1)).enumerate() {
                    put(v, 0, &mut row.iter().copied());
                }
            }
        }
        if bad {
            return Err(format!("accumulators beyond the scratchpad ({} words)", mem.len()));
        }
        Ok(())
    }
}
