//! From the simulated timeline to the [`CostReport`]: totals, cores, utilization, preload,
//! everything rounded.

use super::report::round;
use super::*;

impl Sim<'_> {
    /// The report; `steady` is the steady-state interval of the timeline of a stream of
    /// inferences ([`super::estimate`]).
    pub(super) fn report(mut self, steady: f64) -> CostReport {
        let instrs = std::mem::take(&mut self.instrs);
        let (s, t) = (self.s, self.t);
        let latency = self.cores.iter().map(|c| c.clock).fold(0.0, f64::max);
        let capacity = t.core.scratchpad_kib as u64 * 1024;
        let cores: Vec<CoreCost> = self
            .cores
            .iter()
            .zip(&self.shadows)
            .enumerate()
            .map(|(i, (r, sh))| {
                let footprint = sh.footprint();
                CoreCost {
                    core: i as u32,
                    instructions: r.instructions,
                    busy_ns: round(r.busy),
                    idle_ns: round((latency - r.busy).max(0.0)),
                    end_ns: round(r.clock),
                    energy_pj: round(r.energy),
                    scratch_words: s.cores[i].scratch_words,
                    high_water_words: sh.high_water,
                    footprint_bytes: footprint,
                    capacity_bytes: capacity,
                    over_capacity: footprint > capacity,
                }
            })
            .collect();
        // Never above one inference alone (rounding of the steady timeline aside).
        let interval = if steady > 0.0 { steady.min(latency) } else { latency };
        let energy = self.energy.total();
        let macs = self.counts.macs;
        let ops = 2 * macs;
        let per = |num: f64, den: f64| if den > 0.0 { round(num / den) } else { 0.0 };
        let totals = Totals {
            latency_ns: round(latency),
            cycles: round(latency * self.c.clock_ghz),
            energy_pj: round(energy),
            energy: self.energy.rounded(),
            macs,
            ops,
            tops_per_w: per(ops as f64, energy),
            gops: per(ops as f64, latency),
            interval_ns: round(interval),
            inferences_per_s: per(1e9, interval),
            steady_gops: per(ops as f64, interval),
            steady_power_w: per(energy / 1000.0, interval),
            counts: self.counts,
            breakdown: self.breakdown.finished(energy, self.c.clock_ghz),
        };
        let layer = |l: &LayerCost| LayerCost {
            busy_ns: round(l.busy_ns),
            first_ns: round(l.first_ns),
            last_ns: round(l.last_ns),
            energy_pj: round(l.energy.total()),
            energy: l.energy.rounded(),
            ..l.clone()
        };
        let stream_arrays = s.arrays.max(self.groups_arrays()) as u64;
        let chip = super::chip::chip_cost(t, &totals, stream_arrays);
        CostReport {
            stream: s.name.clone(),
            target: t.name.clone(),
            target_hash: t.hash_hex(),
            schedule: s.schedule.name().to_string(),
            clock_ghz: self.c.clock_ghz,
            totals,
            layers: self.layers.iter().map(layer).collect(),
            unattributed: (self.unattributed.instructions > 0).then(|| layer(&self.unattributed)),
            scratch_over_capacity: cores
                .iter()
                .filter(|c| c.over_capacity)
                .map(|c| c.core)
                .collect(),
            cores,
            utilization: self.utilization(latency, interval),
            preload: self.preload(),
            chip,
            instrs,
        }
    }

    /// One past the highest array of the stream's groups.
    fn groups_arrays(&self) -> u32 {
        self.s.groups.iter().flat_map(|g| g.arrays.iter().map(|&a| a + 1)).max().unwrap_or(0)
    }

    /// The fraction of the arrays busy in an `mvm` per time bin: each `mvm` counts its group's
    /// arrays for its whole duration.
    fn utilization(&self, latency: f64, interval: f64) -> Utilization {
        let s = self.s;
        let arrays = if s.arrays > 0 {
            s.arrays
        } else {
            s.groups.iter().flat_map(|g| g.arrays.iter().map(|&a| a + 1)).max().unwrap_or(0)
        };
        let used: BTreeSet<u32> = s.groups.iter().flat_map(|g| g.arrays.iter().copied()).collect();
        let used_arrays = used.len() as u32;
        if latency <= 0.0 || arrays == 0 {
            return Utilization { arrays, used_arrays, ..Utilization::default() };
        }
        let nb = UTILIZATION_BINS;
        let bin = latency / nb as f64;
        let mut bins = vec![0.0; nb];
        let mut area = 0.0;
        for &(a, b, n) in &self.busy {
            area += (b - a) * n as f64;
            let first = ((a / bin) as usize).min(nb - 1);
            let last = ((b / bin) as usize).min(nb - 1);
            for (k, v) in bins.iter_mut().enumerate().take(last + 1).skip(first) {
                let lo = a.max(k as f64 * bin);
                let hi = b.min((k + 1) as f64 * bin);
                if hi > lo {
                    *v += (hi - lo) * n as f64;
                }
            }
        }
        let full = bin * arrays as f64;
        Utilization {
            arrays,
            bin_ns: round(bin),
            bins: bins.iter().map(|v| round(v / full)).collect(),
            mean: round(area / (latency * arrays as f64)),
            used_arrays,
            mean_used: if used_arrays > 0 {
                round(area / (latency * used_arrays as f64))
            } else {
                0.0
            },
            steady: if interval > 0.0 { round(area / (interval * arrays as f64)) } else { 0.0 },
            steady_used: if used_arrays > 0 && interval > 0.0 {
                round(area / (interval * used_arrays as f64))
            } else {
                0.0
            },
        }
    }

    /// The groups that no `xbar_load` programs, written once when the stream is loaded.
    fn preload(&self) -> Preload {
        let s = self.s;
        let loaded: BTreeSet<u16> = s
            .cores
            .iter()
            .flat_map(|c| c.code.iter())
            .filter_map(|i| match i {
                Instr::XbarLoad { group } => Some(*group),
                // A query for the programmed groups, not a facet of every instruction.
                _ => None,
            })
            .collect();
        let mut p = Preload::default();
        for (gi, g) in s.groups.iter().enumerate() {
            let Ok(id) = u16::try_from(gi) else { break };
            if loaded.contains(&id) {
                continue;
            }
            let num = self.first_numerics(g.core as usize, id);
            let (cells, pj, ns) = program_cost(&num, &self.shape(gi), self.c);
            p.groups += 1;
            p.cells += cells;
            p.energy_pj += pj;
            p.latency_ns = p.latency_ns.max(ns);
        }
        p.energy_pj = round(p.energy_pj);
        p.latency_ns = round(p.latency_ns);
        p
    }
}
